"""Profiles: the shipped grids load, bad files are named, and options override a profile."""

import json
import logging

import pytest

from pipeline.__main__ import build_parser, grid_settings
from pipeline.experiments import profiles
from pipeline.experiments.profiles import ProfileError, load_profile
from pipeline.experiments.aggregate import merged_name
from pipeline.experiments.runner import GridConfig, check_lengths, plan_cells, sample_count


def settings_for(argv: list[str], longbench_dir=None) -> dict:
    return grid_settings(build_parser().parse_args(["results", *argv]), longbench_dir)


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_shipped_cpu_profiles_expand_to_a_valid_grid(name):
    settings = settings_for(["--profile", name])
    config = GridConfig(**settings)
    assert config.tasks
    assert all(config.samples_for(task) for task in config.tasks)
    assert config.budgets


def test_paper_profile_seeds_and_budgets():
    settings = settings_for(["--profile", "paper"])
    assert settings["budgets"] == [64, 128, 256, 512]
    assert settings["method_seeds"] == [0, 1, 2]
    assert len([task for task in settings["tasks"] if task.startswith(("niah", "vt", "cwe", "fwe"))]) == 12


def test_gpu_profile_reads_its_model_from_the_environment(monkeypatch):
    monkeypatch.delenv("LLAMA3_8B_DIR", raising=False)
    with pytest.raises(ProfileError, match="LLAMA3_8B_DIR"):
        settings_for(["--profile", "gpu"])
    monkeypatch.setenv("LLAMA3_8B_DIR", "/models/llama3")
    settings = settings_for(["--profile", "gpu"])
    assert settings["model"] == "/models/llama3"
    assert settings["context_lengths"] == [4096, 8192, 16384]
    assert settings["budgets"] == [128, 256, 512, 1024, 2048]


def test_gpu_profile_lists_the_sixteen_english_longbench_tasks(monkeypatch, tmp_path):
    monkeypatch.setenv("LLAMA3_8B_DIR", "/models/llama3")
    settings = settings_for(["--profile", "gpu"], longbench_dir=tmp_path)
    longbench_tasks = [task for task in settings["tasks"] if task in profiles.ENGLISH_TASKS]
    assert sorted(longbench_tasks) == sorted(profiles.ENGLISH_TASKS)
    assert len(longbench_tasks) == 16
    assert all(settings["task_samples"][task] is None for task in longbench_tasks)


def write_profile(tmp_path, text: str):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_unknown_field_names_the_file_and_field(tmp_path):
    path = write_profile(tmp_path, "description: x\nbudget: [128]\nruler: {tasks: [vt]}\n")
    with pytest.raises(ProfileError, match=r"grid\.yaml: budget: Extra inputs"):
        load_profile(str(path))


def test_wrong_type_names_the_nested_field(tmp_path):
    path = write_profile(tmp_path, "description: x\nruler: {tasks: [vt], num_samples: many}\n")
    with pytest.raises(ProfileError, match=r"ruler\.num_samples"):
        load_profile(str(path))


def test_unknown_task_is_named_with_the_choices(tmp_path):
    path = write_profile(tmp_path, "description: x\nruler: {tasks: [niah_single_9]}\n")
    with pytest.raises(ProfileError, match="niah_single_9.*choose from niah_single_1"):
        load_profile(str(path))


def test_broken_yaml_and_missing_files_are_reported(tmp_path):
    path = write_profile(tmp_path, "description: [unclosed\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        load_profile(str(path))
    with pytest.raises(ProfileError, match="Unknown profile 'fast'; choose one of gpu, paper, quick"):
        load_profile("fast")
    with pytest.raises(ProfileError, match="not found"):
        load_profile(str(tmp_path / "absent.yaml"))


def test_profile_without_tasks_rejected(tmp_path):
    path = write_profile(tmp_path, "description: x\nlongbench: {tasks: [trec]}\n")
    with pytest.raises(ProfileError, match="no tasks"):
        settings_for(["--profile", str(path)])


def test_available_longbench_tasks_are_the_english_files_present(tmp_path):
    data = tmp_path / "longbench"
    data.mkdir()
    for name in ("trec", "qasper", "lsht", "notes"):
        (data / f"{name}.jsonl").write_text("{}\n")
    path = write_profile(tmp_path, "description: x\nlongbench: {tasks: available, num_samples: 5}\n")
    settings = settings_for(["--profile", str(path)], longbench_dir=data)
    assert settings["tasks"] == ["qasper", "trec"]
    assert settings["task_samples"] == {"qasper": 5, "trec": 5}
    without_data = write_profile(tmp_path, "description: x\nruler: {tasks: [vt]}\nlongbench: {tasks: available}\n")
    assert settings_for(["--profile", str(without_data)])["tasks"] == ["vt"]


def test_options_override_the_profile(tmp_path):
    path = write_profile(
        tmp_path,
        "description: x\nbudgets: [64]\nmethods: [full, snapkv]\n"
        "ruler: {tasks: [vt, cwe], num_samples: 7, context_lengths: [1024, 2048]}\n",
    )
    settings = settings_for(["--profile", str(path)])
    assert settings["task_samples"] == {"vt": 7, "cwe": 7}
    assert settings["context_lengths"] == [1024, 2048]

    settings = settings_for(["--profile", str(path), "--num-samples", "2", "--budgets", "32",
                             "--task-samples", "cwe=3", "--context-tokens", "512"])
    config = GridConfig(**settings)
    assert (config.samples_for("vt"), config.samples_for("cwe")) == (2, 3)
    assert config.budgets == [32]
    assert config.methods == ["full", "snapkv"]
    assert config.context_lengths == [512]
    assert settings_for(["--profile", str(path), "--tasks", "fwe"])["tasks"] == ["fwe"]


def test_without_a_profile_the_defaults_hold():
    settings = settings_for([])
    assert settings["budgets"] == [128, 512]
    assert settings["context_lengths"] == [4096]
    assert settings_for(["--budget-ratio", "0.1"])["budgets"] == []


def test_generated_task_cells_per_length(tmp_path):
    config = GridConfig(tasks=["vt"], methods=["full", "snapkv"], budgets=[64], context_lengths=[1024, 2048],
                        num_samples=2, results_dir=tmp_path)
    assert config.lengths_for("vt") == [1024, 2048]
    names = set()
    for length in config.lengths_for("vt"):
        for cell in plan_cells("vt", "ruler", config, length):
            assert cell.context_tokens == length
            names.add(f"merged/{merged_name(cell)}")
    assert names == {
        f"merged/vt/ctx{length}-prompt-{name}.json"
        for length in (1024, 2048) for name in ("full-full", "snapkv-b64")
    }


def test_lengths_beyond_the_model_are_refused_before_running():
    config = GridConfig(tasks=["niah_single_1", "vt"], context_lengths=[4096, 8192])
    check_lengths([GridConfig(tasks=["vt"], context_lengths=[4096])], 8192)
    with pytest.raises(ValueError, match="niah_single_1 at 8192 tokens .* does not fit the model's 8192-token limit"):
        check_lengths([config], 8192)


def test_short_longbench_file_runs_all_rows(tmp_path, caplog):
    (tmp_path / "trec.jsonl").write_text("\n".join(json.dumps({"_id": str(i)}) for i in range(3)) + "\n\n")
    config = GridConfig(tasks=["trec"], longbench_dir=tmp_path, task_samples={"trec": 20})
    with caplog.at_level(logging.WARNING):
        assert sample_count("trec", "longbench", config) == 3
    assert "fewer than the 20 requested" in caplog.text
    assert sample_count("trec", "longbench", GridConfig(tasks=["trec"], longbench_dir=tmp_path, num_samples=None)) == 3
    assert sample_count("trec", "longbench", GridConfig(tasks=["trec"], longbench_dir=tmp_path, num_samples=2)) == 2


def test_bad_context_lengths_name_the_option(capsys):
    for value in ("abc", "0", "4096,x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["results", "--context-tokens", value])
        assert "expected comma-separated positive token counts" in capsys.readouterr().err


def test_quick_profile_adds_an_ablation_pass_on_the_same_prompts():
    from pipeline.__main__ import ablation_grid

    args = build_parser().parse_args(["results", "--profile", "quick"])
    settings = grid_settings(args, None)
    ablation = ablation_grid(args, settings)
    assert ablation["budgets"] == [128]
    assert "circuitkv+normalize=false" in ablation["methods"]
    assert ablation["tasks"] == settings["tasks"]
    assert ablation["task_samples"] == settings["task_samples"]
    GridConfig(**ablation)

    own = build_parser().parse_args(["results", "--profile", "quick", "--methods", "full"])
    assert ablation_grid(own, grid_settings(own, None)) is None


def test_ablation_tasks_outside_the_grid_are_an_error(tmp_path):
    path = write_profile(tmp_path, "description: x\nruler:\n  tasks: [vt]\n"
                                   "ablation:\n  methods: [circuitkv-exact]\n  budgets: [128]\n  tasks: [cwe]\n")
    _, profile = load_profile(str(path))
    with pytest.raises(ProfileError, match=r"ablation.tasks: none of cwe is in the main grid's tasks \(vt\)"):
        profiles.ablation_settings(path, profile, {"tasks": ["vt"]})
