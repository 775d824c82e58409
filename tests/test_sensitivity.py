"""The bridges and sensitivity analysis, its figures and macros, on hand-made prompts and a tiny random Llama."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from pipeline.analysis import sensitivity
from pipeline.analysis.sensitivity import (
    BRIDGES_FILE,
    SENSITIVITY_FILE,
    PromptTokens,
    analyse,
    answer_positions,
    answer_shares,
    attention_kept,
    bridge_record,
    build_parser,
    encode_with_answers,
    is_up_to_date,
    layer_sensitivity,
    run_config,
    stored_view,
    sweep_methods,
    walk_kept,
    write_records,
)
from pipeline.benchmarks.sample import Sample
from pipeline.checks.prose_numbers import typed_numbers
from pipeline.methods.base import LayerView
from pipeline.methods.circuitkv import CircuitKV
from pipeline.model.prefill import prefill
from pipeline.render.analysis_figures import (
    analysis_context,
    analysis_macros,
    bridges_answer_wording,
    comparison_word,
    draw_bridges,
    draw_sensitivity,
    sweep_beats_attention,
    walkers_trend,
)
from pipeline.render.latex import make_environment

REPOSITORY = Path(__file__).resolve().parents[1]
N = 200
BUDGET = 64  # 4 sinks + 32 window + 28 free slots
ANSWERS = (60, 61, 62, 150)
SMALL_GRIDS = {"temperature": (0.5, 1.0), "num_walkers": (64, 1024), "max_steps": (2, 10, None)}


@pytest.fixture(scope="module")
def tiny_prefill(tiny_llama):
    torch.manual_seed(3)
    return prefill(tiny_llama, torch.randint(3, 128, (1, N)))


@pytest.fixture(scope="module")
def records(tiny_llama):
    torch.manual_seed(4)
    prompts = [
        PromptTokens("task-s0-0", torch.randint(3, 128, (1, N)), ANSWERS),
        PromptTokens("task-s0-1", torch.randint(3, 128, (1, N - 30)), (20, 21)),
    ]
    return analyse(tiny_llama, prompts, BUDGET, bridge_layer=1, seed=0, grids=SMALL_GRIDS, progress=False)


def make_config(**overrides) -> dict:
    config = {"task": "niah_multikey_1", "sample_ids": ["task-s0-0", "task-s0-1"], "context_tokens": N,
              "budget": BUDGET}
    return {**config, **overrides}


@pytest.fixture
def results_dir(tmp_path, records):
    bridges, sweep = records
    write_records(tmp_path / "results" / "diagnostics", make_config(), bridges, sweep)
    return tmp_path / "results"


# Answer tokens.


def test_answer_positions_cover_every_occurrence():
    text = "key 12 is 345; again 345."
    # One token per word or punctuation mark, plus a special token with an empty span.
    offsets = [(0, 0), (0, 3), (3, 6), (6, 9), (9, 13), (13, 14), (14, 20), (20, 24), (24, 25)]
    assert answer_positions(text, offsets, ["345"]) == [4, 7]


def test_answer_positions_partial_token_overlap():
    text = "abc1234567def"
    offsets = [(0, 4), (4, 8), (8, 13)]
    assert answer_positions(text, offsets, ["1234567"]) == [0, 1, 2]
    assert answer_positions(text, offsets, ["567"]) == [1, 2]


def test_answer_positions_missing_reference():
    with pytest.raises(ValueError, match="'999' does not occur"):
        answer_positions("only 123 here", [(0, 4), (4, 8), (8, 13)], ["999"])
    with pytest.raises(ValueError, match="empty reference"):
        answer_positions("text", [(0, 4)], [""])


@pytest.fixture(scope="module")
def tokenizer():
    from pipeline.model.loading import load_tokenizer

    return load_tokenizer()


def test_encode_with_answers_real_tokenizer(tokenizer):
    prompt = (
        "Some text before. One of the special magic numbers for brave-lion is: 7654321. Filler text.\n"
        "What is the special magic number for brave-lion mentioned in the provided text?"
    )
    question = "\nWhat is the special magic number for brave-lion mentioned in the provided text?"
    sample = Sample(task="niah_single_1", sample_id="hand-0", prompt=prompt, question=question,
                    references=("7654321",), metric="string_match_all", max_new_tokens=16,
                    answer_prefix=" The special magic number for brave-lion mentioned in the provided text is")
    encoded = encode_with_answers(sample, tokenizer, max_prompt_tokens=512)
    tokens = encoded.input_ids[0].tolist()
    pieces = [tokenizer.decode([tokens[position]]) for position in encoded.answers]
    assert "".join(pieces).strip() == "7654321"
    assert encoded.answers == tuple(range(encoded.answers[0], encoded.answers[-1] + 1))
    before = tokenizer.decode([tokens[encoded.answers[0] - 1]])
    after = tokenizer.decode([tokens[encoded.answers[-1] + 1]])
    assert not any(character.isdigit() for character in before)
    assert after.startswith(".")


# One layer on the tiny model.


def test_stored_view_matches_computed_rows(tiny_prefill):
    view = stored_view(tiny_prefill, 1, seed=0)
    computed = LayerView(1, 2, tiny_prefill.queries[1], tiny_prefill.keys(1), tiny_prefill.scaling,
                         torch.Generator().manual_seed(0))
    positions = torch.tensor([5, 77, N - 1])
    for kv_head in range(view.num_kv_heads):
        stored = view.attention_rows(kv_head, positions)
        assert stored.shape == (3, N)
        assert torch.allclose(stored, computed.attention_rows(kv_head, positions), atol=1e-6)


def test_stored_rows_are_copies(tiny_prefill):
    view = stored_view(tiny_prefill, 0, seed=0)
    rows = view.attention_rows(0, torch.tensor([10]))
    rows.zero_()
    assert view.matrices[0, 10, :11].sum() > 0.99


def test_bridge_record_shapes_and_sets(tiny_prefill):
    circuit = CircuitKV()
    view = stored_view(tiny_prefill, 1, seed=0)
    record = bridge_record(view, circuit, BUDGET, ANSWERS, seed=0)
    assert len(record["direct_attention"]) == N
    assert len(record["circuitkv_score"]) == N
    assert len(record["kept"]["circuitkv"]) == view.num_kv_heads
    assert all(len(head) == BUDGET for head in record["kept"]["circuitkv"])
    assert all(len(head) == BUDGET for head in record["kept"]["attention"])
    assert record["answer_positions"] == list(ANSWERS)
    assert record["summary"]["answer_tokens"] == len(ANSWERS)
    assert record["summary"]["bridges"]["per_kv_head"] == [len(head) for head in record["bridges"]]
    for ranking in ("circuitkv", "attention"):
        assert 0.0 <= record["summary"]["answer_kept"][ranking] <= 1.0


def test_bridge_record_keeps_what_circuitkv_keeps(tiny_prefill):
    circuit = CircuitKV()
    view = stored_view(tiny_prefill, 1, seed=0)
    record = bridge_record(view, circuit, BUDGET, ANSWERS, seed=0)
    assert record["kept"]["circuitkv"] == walk_kept(circuit, view, BUDGET, seed=0).tolist()


def test_bridges_are_walk_only(tiny_prefill):
    view = stored_view(tiny_prefill, 1, seed=0)
    record = bridge_record(view, CircuitKV(), BUDGET, ANSWERS, seed=0)
    for head, walk, attention in zip(record["bridges"], record["kept"]["circuitkv"], record["kept"]["attention"]):
        for bridge in head:
            assert bridge["position"] in walk
            assert bridge["position"] not in attention


def test_attention_kept_forces_sinks_and_window():
    attention = torch.zeros(1, 100)
    attention[0, 50] = 1.0
    kept = attention_kept(attention, CircuitKV(num_sinks=4, window=32), budget=37)[0].tolist()
    assert kept == [0, 1, 2, 3, 50] + list(range(68, 100))


def test_answer_shares_per_head():
    kept = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert answer_shares(kept, [2, 5, 9, 3]) == [0.5, 0.25]
    with pytest.raises(ValueError, match="No answer positions"):
        answer_shares(kept, [])


def test_sweep_methods_share_the_default():
    methods = sweep_methods(SMALL_GRIDS)
    assert sorted(methods) == ["default", "max_steps=2", "max_steps=inf", "num_walkers=64", "temperature=0.5"]
    assert methods["max_steps=inf"].max_steps is None
    assert methods["default"] == CircuitKV()


def test_layer_sensitivity_reference_jaccard_one(tiny_prefill):
    view = stored_view(tiny_prefill, 0, seed=0)
    calls = []
    result = layer_sensitivity(view, sweep_methods(SMALL_GRIDS), BUDGET, ANSWERS, seed=0,
                               on_setting=lambda: calls.append(1))
    assert len(calls) == len(sweep_methods(SMALL_GRIDS)) + 1
    assert result["reference"]["jaccard"] == [1.0] * view.num_kv_heads
    for name, measures in result.items():
        assert len(measures["answer_kept"]) == view.num_kv_heads, name
        assert all(0.0 <= value <= 1.0 for value in measures["answer_kept"]), name
        assert all(0.0 <= value <= 1.0 for value in measures["jaccard"]), name


def test_exact_reference_is_deterministic(tiny_prefill):
    view = stored_view(tiny_prefill, 1, seed=0)
    reference = CircuitKV(exact=True)
    first = walk_kept(reference, view, BUDGET, seed=0)
    second = walk_kept(reference, view, BUDGET, seed=7)
    assert torch.equal(first, second)


# The whole analysis.


def test_analyse_records(records):
    bridges, sweep = records
    assert bridges["layer"] == 1
    assert bridges["sample_id"] == "task-s0-0"
    assert sweep["layers"] == [0, 1]
    assert sweep["answer_tokens"] == [len(ANSWERS), 2]
    assert sweep["reference"]["jaccard"] == pytest.approx(1.0)
    for parameter, values in SMALL_GRIDS.items():
        entries = sweep["sweeps"][parameter]
        assert [entry["value"] for entry in entries] == list(values)
        for entry in entries:
            assert 0.0 <= entry["answer_kept"] <= 1.0
            assert 0.0 <= entry["jaccard"] <= 1.0
            assert len(entry["answer_kept_per_prompt"]) == 2


def test_analyse_default_fills_every_grid(records):
    _, sweep = records
    default_entries = [
        next(entry for entry in sweep["sweeps"][parameter] if entry["value"] == sweep["defaults"][parameter])
        for parameter in SMALL_GRIDS
    ]
    measures = [{key: value for key, value in entry.items() if key != "value"} for entry in default_entries]
    assert all(measure == measures[0] for measure in measures)


def test_analyse_rejects_bad_layer(tiny_llama):
    prompt = PromptTokens("p", torch.randint(3, 128, (1, 50)), (10,))
    with pytest.raises(ValueError, match="Layer 2 is outside"):
        analyse(tiny_llama, [prompt], BUDGET, bridge_layer=2, grids=SMALL_GRIDS, progress=False)


# Files and the command line.


def test_records_round_trip(results_dir, records):
    bridges, sweep = records
    stored = json.loads((results_dir / "diagnostics" / BRIDGES_FILE).read_text())
    assert stored == json.loads(json.dumps({"config": make_config(), **bridges}))
    stored = json.loads((results_dir / "diagnostics" / SENSITIVITY_FILE).read_text())
    assert stored["sweeps"]["max_steps"][-1]["value"] is None
    assert stored == json.loads(json.dumps({"config": make_config(), **sweep}))


def test_up_to_date_only_with_same_config(results_dir):
    directory = results_dir / "diagnostics"
    assert is_up_to_date(directory, make_config())
    assert not is_up_to_date(directory, make_config(budget=BUDGET * 2))
    (directory / SENSITIVITY_FILE).unlink()
    assert not is_up_to_date(directory, make_config())


def test_up_to_date_rejects_corrupt_file(results_dir):
    directory = results_dir / "diagnostics"
    (directory / BRIDGES_FILE).write_text("{not json")
    assert not is_up_to_date(directory, make_config())


def test_cli_skips_when_up_to_date(tmp_path, monkeypatch, caplog, records):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    output = tmp_path / "diagnostics"
    argv = ["--task", "niah_single_1", "--prompts", "2", "--model", str(model_dir), "--output-dir", str(output)]
    config = run_config(build_parser().parse_args(argv), str(model_dir), None)
    write_records(output, config, *records)

    def fail(*args, **kwargs):
        raise AssertionError("an up-to-date run must not load the model")

    monkeypatch.setattr("pipeline.model.loading.load_model", fail)
    with caplog.at_level(logging.INFO, logger="pipeline.analysis.sensitivity"):
        assert sensitivity.main(argv) == 0
    assert "up to date" in caplog.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prompts", "0"], "--prompts 0"),
        (["--budget", "10"], "--budget 10"),
        (["--task", "no_such_task"], "--task no_such_task"),
        (["--layer", "-1"], "--layer -1"),
        (["--context-tokens", "0"], "--context-tokens 0"),
        (["--model", "/nonexistent/model"], "--model /nonexistent/model"),
        (["--essays-dir", "/nonexistent/essays"], "--essays-dir /nonexistent/essays"),
    ],
)
def test_cli_bad_option_exits_2(argv, message, caplog, tmp_path):
    with caplog.at_level(logging.ERROR, logger="pipeline.analysis.sensitivity"):
        assert sensitivity.main([*argv, "--output-dir", str(tmp_path)]) == 2
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert message in errors[0].getMessage()


def test_cli_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sensitivity.main(["--help"])
    assert exit_info.value.code == 0
    assert "--budget" in capsys.readouterr().out


# Figures, macros and templates.


@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="pdffonts (poppler-utils) not installed")
def test_figures_have_no_type3_fonts(tmp_path, records):
    bridges, sweep = records
    sweep = {"config": make_config(), **sweep}
    paths = [draw_bridges(bridges, tmp_path / "bridges.pdf"), draw_sensitivity(sweep, tmp_path / "sensitivity.pdf")]
    for path in paths:
        assert path.is_file()
        fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
        assert "Type 3" not in fonts
        assert "TrueType" in fonts


def test_figures_are_reproducible(tmp_path, records):
    bridges, _ = records
    first = draw_bridges(bridges, tmp_path / "first.pdf").read_bytes()
    second = draw_bridges(bridges, tmp_path / "second.pdf").read_bytes()
    assert first == second


def test_analysis_context_draws_and_collects(results_dir, tmp_path):
    context, macros, paths = analysis_context(results_dir, tmp_path / "figures")
    assert [path.name for path in paths] == ["bridges.pdf", "sensitivity.pdf"]
    assert all(path.is_file() for path in paths)
    assert context["bridges_task"] == "MK-NIAH-1"
    assert context["bridges_answers"] in {"none", "same", "more", "fewer"}
    assert context["bridges_comparison"] in {"more", "fewer", "as many"}
    assert context["sensitivity_comparison"] in {"more", "fewer", "as many"}
    assert context["walkers"]["low_key"] == "sensitivity/N/64"
    assert context["walkers"]["high_key"] == "sensitivity/N/1024"
    assert macros


def test_analysis_context_absent_files(tmp_path):
    assert analysis_context(tmp_path, tmp_path / "figures") == (None, [], [])


def test_macros_carry_sources(records):
    bridges, sweep = records
    macros = analysis_macros(bridges, {"config": make_config(), **sweep})
    keys = [key for key, _, _ in macros]
    assert len(keys) == len(set(keys))
    for expected in ("bridges/layer", "bridges/count", "bridges/answer_kept/circuitkv",
                     "bridges/answer_kept/attention", "sensitivity/prompts", "sensitivity/best_T",
                     "sensitivity/best_N", "sensitivity/best_S", "sensitivity/S/inf/jaccard"):
        assert expected in keys
    for key, value, source in macros:
        file = "bridges.json" if key.startswith("bridges/") else "sensitivity.json"
        assert re.fullmatch(rf"data/results/diagnostics/{file}: \S.*", source), (key, source)
        assert value.strip(), key


def test_macro_values_are_formatted(records):
    bridges, sweep = records
    values = {key: value for key, value, _ in analysis_macros(bridges, {"config": make_config(), **sweep})}
    assert values["bridges/layer"] == "1"
    assert values["sensitivity/prompts"] == "2"
    share = 100 * bridges["summary"]["answer_kept"]["circuitkv"]
    assert values["bridges/answer_kept/circuitkv"] == f"{share:.1f}"
    assert values["sensitivity/S/inf/answer_kept"] == f"{100 * sweep['sweeps']['max_steps'][-1]['answer_kept']:.1f}"
    assert values["sensitivity/default_S"] == "10"
    assert values["sensitivity/T/0.5/jaccard"] == f"{sweep['sweeps']['temperature'][0]['jaccard']:.2f}"


@pytest.mark.parametrize(
    ("file", "edit", "field"),
    [
        (BRIDGES_FILE, lambda record: record["summary"]["answer_kept"].pop("circuitkv"),
         "summary.answer_kept.circuitkv"),
        (BRIDGES_FILE, lambda record: record.__setitem__("direct_attention", [0.5]), "direct_attention"),
        (SENSITIVITY_FILE, lambda record: record["sweeps"].pop("num_walkers"), "sweeps.num_walkers"),
        (SENSITIVITY_FILE, lambda record: record["sweeps"]["temperature"][1].__setitem__("jaccard", 2.0),
         "sweeps.temperature[1]"),
        (SENSITIVITY_FILE, lambda record: record["config"].pop("sample_ids"), "config.sample_ids"),
    ],
)
def test_malformed_record_names_file_and_field(results_dir, tmp_path, file, edit, field):
    path = results_dir / "diagnostics" / file
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=re.escape(file)) as error:
        analysis_context(results_dir, tmp_path / "figures")
    assert field in str(error.value)


def test_invalid_json_names_file(results_dir, tmp_path):
    (results_dir / "diagnostics" / SENSITIVITY_FILE).write_text("[1, 2")
    with pytest.raises(ValueError, match=r"sensitivity\.json: invalid JSON"):
        analysis_context(results_dir, tmp_path / "figures")


@pytest.mark.parametrize(
    ("circuitkv", "attention", "expected"),
    [(0.0, 0.0, "none"), (0.5, 0.5, "same"), (0.5, 0.25, "more"), (0.25, 0.5, "fewer"), (0.50001, 0.5, "same")],
)
def test_bridges_answer_wording(circuitkv, attention, expected):
    summary = {"answer_kept": {"circuitkv": circuitkv, "attention": attention}}
    assert bridges_answer_wording(summary) == expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [(0.5, 0.25, "more"), (0.25, 0.5, "fewer"), (0.0, 0.0, "as many"), (0.50001, 0.5, "as many")],
)
def test_comparison_word(first, second, expected):
    assert comparison_word(first, second) == expected


def _sweep_record(jaccards: list[float], shares: list[float], attention_share: float) -> dict:
    return {
        "sweeps": {"num_walkers": [
            {"value": 64 * 4**index, "jaccard": jaccard, "answer_kept": share}
            for index, (jaccard, share) in enumerate(zip(jaccards, shares))
        ]},
        "attention": {"answer_kept": attention_share},
    }


def test_walkers_trend_rises_only_monotonically():
    assert walkers_trend(_sweep_record([0.4, 0.6, 0.8], [0, 0, 0], 0))["jaccard_rises"]
    assert not walkers_trend(_sweep_record([0.4, 0.7, 0.6], [0, 0, 0], 0))["jaccard_rises"]
    assert not walkers_trend(_sweep_record([0.5, 0.5, 0.5], [0, 0, 0], 0))["jaccard_rises"]
    trend = walkers_trend(_sweep_record([0.4, 0.6, 0.8], [0, 0, 0], 0))
    assert trend["low_key"] == "sensitivity/N/64"
    assert trend["high_key"] == "sensitivity/N/1024"


def test_sweep_beats_attention_at_printed_precision():
    assert sweep_beats_attention(_sweep_record([0.5], [0.07], 0.06))
    assert not sweep_beats_attention(_sweep_record([0.5], [0.06], 0.06))
    assert not sweep_beats_attention(_sweep_record([0.5], [0.060001], 0.06))


TEMPLATE_VARIANTS = [
    {},
    {"bridges_answers": "same", "has_bridges": False, "sweep_beats_attention": True},
    {"bridges_answers": "more", "walkers": {"low_key": "sensitivity/N/64", "high_key": "sensitivity/N/1024",
                                            "jaccard_rises": False}},
    {"bridges_answers": "fewer"},
]


@pytest.mark.parametrize("variant", TEMPLATE_VARIANTS)
@pytest.mark.parametrize("template", ["figure_bridges.tex.j2", "figure_sensitivity.tex.j2"])
def test_templates_quote_only_known_macros(template, variant, results_dir, tmp_path):
    context, macros, _ = analysis_context(results_dir, tmp_path / "figures")
    context = {**context, **variant}
    environment = make_environment(REPOSITORY / "templates")
    text = environment.get_template(f"sections/{template}").render(analysis=context)
    keys = {key for key, _, _ in macros}
    quoted = re.findall(r"\\result\{([^}]*)\}", text)
    assert quoted
    assert set(quoted) <= keys
    assert re.search(r"\\includegraphics(\[[^]]*\])?\{figures/(bridges|sensitivity)\.pdf\}", text)
    assert re.search(r"\\label\{fig:(bridges|sensitivity)\}", text)
    assert typed_numbers(text, [context["bridges_task"], context["sensitivity_task"]]) == []


@pytest.mark.parametrize("template", ["figure_bridges.tex.j2", "figure_sensitivity.tex.j2"])
def test_templates_empty_without_analysis(template):
    environment = make_environment(REPOSITORY / "templates")
    assert environment.get_template(f"sections/{template}").render(analysis=None).strip() == ""
