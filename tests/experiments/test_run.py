"""The experiment runner end to end, in-process, on tiny scenes."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from experiments.run import main
from incremental.devices import resolve_precision
from incremental.models import load_model_file
from incremental.models.model_file import tensors_checksum
from tests.scripts import load_test_data

TINY = {
    "name": "tiny",
    "scenarios": ["fashion-new-class", "fashion-split"],
    "strategies": ["finetune", "candidate-sets+replay"],
    "seeds": [0],
    "wandb": "disabled",
    "jobs": 1,  # in this process (a test of parallel jobs sets its own)
    "train_old": {"epochs": 1, "batch_size": 4, "progress_bar": False, "limit_train_batches": 3},
    "train": {"epochs": 1, "batch_size": 4, "progress_bar": False, "limit_train_batches": 2},
    "scenario_overrides": {
        "fashion": {
            "sizes": {"old_train": 12, "new_train": 8, "val": 4, "test": 4, "old_val": 4},
            "image_size": 32,
        }
    },
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "cache_dir": str(tmp_path / "cache")}))
    return path


def test_run_writes_every_output(tmp_path, config_file, capsys):
    out = tmp_path / "out"
    assert main([str(config_file), "--output", str(out)]) == 0
    frame = pd.read_csv(out / "results.csv")
    expected = [
        "scenario",
        "strategy",
        "seed",
        "replay",
        "miou_all",
        "miou_old",
        "miou_new",
        "hiou",
    ]
    assert list(frame.columns[:8]) == expected
    assert "iou/bag" in frame and "iou/sneaker" in frame and "parent_iou/footwear" in frame
    assert len(frame) == 4
    assert set(frame["strategy"]) == {"finetune", "candidate-sets"}
    assert frame.set_index("strategy").loc["candidate-sets", "replay"].all()
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Experiment tiny")
    # The quick profile's step 1 runs at precision "auto"; results say what it resolved to.
    ran = resolve_precision("auto", "auto")
    assert set(frame["precision"]) == {ran} and f"{frame['device'][0]} at {ran}" in summary
    assert (out / "comparison.png").stat().st_size > 1000
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 1 and saved["profile"] == "quick"
    # Each run computed with the config's one thread, whatever this process's count.
    assert saved["threads"] == 1 and set(frame["threads"]) == {1}
    environment = yaml.safe_load((out / "environment.yaml").read_text())
    assert environment["threads"] == 1 and environment["packages"]["torch"] == torch.__version__
    model = load_model_file(out / "models" / "fashion-split" / "candidate-sets+replay-seed0.pt")
    assert model.classes[-1] == "sneaker" and model.parents["sneaker"] == "footwear"
    assert model.build()(torch.zeros(1, 3, 32, 32)).shape == (1, 7, 32, 32)
    printed = capsys.readouterr().out
    assert "| fashion-split | candidate-sets | True |" in printed

    # The old models are cached: a second experiment reuses them.
    cached = sorted((tmp_path / "cache").glob("old-*.pt"))
    assert len(cached) == 2
    recorded = load_model_file(cached[0]).metadata
    assert recorded["environment"]["threads"] == 1 and recorded["channels_last"] is True
    assert recorded["environment"]["packages"]["torch"] == torch.__version__
    stamps = [p.stat().st_mtime_ns for p in cached]
    out2 = tmp_path / "out2"
    assert main([str(config_file), "--output", str(out2), "--strategies", "finetune"]) == 0
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    assert not (out2 / "runs" / "fashion-split" / "old-model").exists()


def test_existing_results_are_not_overwritten(tmp_path, config_file, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("keep me")
    assert main([str(config_file), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "keep me"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "mibb"], "unknown strategy 'mibb'"),
        (["--set", "train.epochz=2"], "train.epochz"),
        (["--set", "train.epochs=many"], "train.epochs"),
        (["--scenarios", "nope"], "unknown scenario 'nope'"),
        (["--profile", "fast"], "unknown profile 'fast'"),
        (["--set", "strategy_overrides.mib.kd_wieght=1", "--strategies", "mib"], "kd_wieght"),
        (["--set", "strategy_overrides.mibb.kd_weight=1"], "unknown strategy 'mibb'"),
        (["--set", "train.trainer.accumulate_grad_batchez=2"], "train.trainer.accumulate_grad"),
        (["--set", "train.trainer.max_epochs=2"], "set train.epochs instead"),
        (["--set", "train.trainer.logger=false"], "set by the framework"),
        (["--set", "strategy_train.joint.epochz=3"], "strategy_train.joint: unknown key"),
        (["--set", "strategy_train.jont.epochs=3"], "strategy_train: unknown strategy 'jont'"),
        (["--jobs", "0"], "jobs: expected 'auto' or an integer >= 1"),
        (["--set", "threads=0"], "threads: expected an integer >= 1, got 0"),
        (["--set", "threads=many"], "threads"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, config_file, capsys, args, message):
    assert main([str(config_file), "--output", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_multi_step_paper_task_chains_steps(tmp_path):
    """VOC 15-1 on a fake tree with the real layout: step t starts from step t-1's model."""
    trees = load_test_data("make_paper_trees")
    root = trees.make_voc_tree(tmp_path / "data")
    scenario = tmp_path / "voc-15-1.yaml"
    scenario.write_text(
        yaml.safe_dump(
            {
                "kind": "paper",
                "name": "voc-15-1",
                "dataset": "voc",
                "root": str(root),
                "task": "15-1",
                "val_fraction": 0.5,
            }
        )
    )
    config = {
        **{k: v for k, v in TINY.items() if k != "scenario_overrides"},
        "profile": "paper",
        "scenarios": [str(scenario)],
        "strategies": ["candidate-sets"],
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main([str(path), "--output", str(tmp_path / "out")]) == 0
    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    assert list(frame["scenario"]) == [f"voc-15-1@step{t}" for t in range(1, 6)]
    assert "iou/tvmonitor" in frame
    last = load_model_file(
        tmp_path / "out" / "models" / "voc-15-1@step5" / "candidate-sets-seed0.pt"
    )
    assert len(last.classes) == 21


@pytest.mark.slow
def test_parallel_jobs_write_every_run(tmp_path, config_file, capsys):
    """Two single-threaded jobs: old models first, then every (scenario, seed, strategy)
    chain; the main process writes the results of all, and --resume runs nothing again."""
    out = tmp_path / "parallel"
    argv = [str(config_file), "--output", str(out), "--jobs", "2", "--seeds", "0,1",
            "--scenarios", "fashion-new-class"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "2 old model(s) to train, 4 run(s), 2 jobs" in text
    results = pd.read_csv(out / "results.csv")
    # The grid's order (seed, then strategy), though the replaying chains started first.
    assert list(zip(results["strategy"], results["seed"], strict=True)) == [
        ("finetune", 0), ("candidate-sets", 0), ("finetune", 1), ("candidate-sets", 1)
    ]  # fmt: skip
    assert len(list((out / "models").rglob("*.pt"))) == 4
    # Each old model was trained once: the chains loaded it from the cache.
    for seed in (0, 1):
        logs = out / "runs" / "fashion-new-class" / "old-model" / f"seed{seed}" / "logs"
        assert [v.name for v in logs.iterdir()] == ["version_0"]
    assert main([*argv, "--resume"]) == 0
    assert capsys.readouterr().out.count("finished before: kept") == 4
    # Cached old models are loaded by the main process; none is sent to a job.
    assert main([*argv, "--output", str(tmp_path / "again")]) == 0
    assert "0 old model(s) to train, 4 run(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_parallel_jobs_give_the_numbers_of_one_job(tmp_path, config_file):
    """``threads`` (1) decides each run's thread count, not ``jobs``: the same experiment in
    this process (here at two threads) and in two single-threaded workers gives the same old
    model and the same scores to the last bit. Before, ``--jobs 1`` computed at the process's
    count and gave other numbers."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # this process's default on a 2-core machine
    try:
        common = [str(config_file), "--scenarios", "fashion-split", "--strategies",
                  "candidate-sets", "--retrain-old"]  # fmt: skip
        here, there = tmp_path / "here", tmp_path / "there"
        assert main([*common, "--output", str(here), "--jobs", "1",
                     "--set", f"cache_dir={tmp_path / 'cache-here'}"]) == 0  # fmt: skip
        assert torch.get_num_threads() == 2  # restored
        assert main([*common, "--output", str(there), "--jobs", "2",
                     "--set", f"cache_dir={tmp_path / 'cache-there'}"]) == 0  # fmt: skip
    finally:
        torch.set_num_threads(before)
    a, b = (pd.read_csv(p / "results.csv") for p in (here, there))
    scores = [c for c in a.columns if c.startswith(("miou", "iou/", "hiou", "split_"))]
    assert scores and a[scores].equals(b[scores])
    old = [
        tensors_checksum(load_model_file(next((tmp_path / c).glob("old-*.pt"))).state_dict)
        for c in ("cache-here", "cache-there")
    ]
    assert old[0] == old[1]


@pytest.mark.slow
def test_scenarios_of_one_step_0_share_one_old_model_in_parallel(tmp_path, config_file, capsys):
    """A split and its sibling-rate variant have the same step 0: parallel jobs train its old
    model once (not once per scenario) and both chains start from it."""
    out = tmp_path / "siblings"
    argv = [str(config_file), "--output", str(out), "--jobs", "2", "--strategies", "finetune",
            "--scenarios", "fashion-split,fashion-split-siblings01"]  # fmt: skip
    assert main(argv) == 0
    assert "1 old model(s) to train, 2 run(s), 2 jobs" in capsys.readouterr().out
    trained = sorted(p.parents[2].name for p in (out / "runs").glob("*/old-model/seed0/logs"))
    assert trained == ["fashion-split"]
    results = pd.read_csv(out / "results.csv")
    assert list(results["scenario"]) == ["fashion-split", "fashion-split-siblings01"]
    assert results["old_model_miou"].nunique() == 1


def test_both_oracles_run_and_are_checked(tmp_path, config_file):
    """The full profile's two oracles through the runner: both train (the distilled one with
    the teacher), and the summary's oracle check reads both, even on classes some of them did
    not score."""
    out = tmp_path / "out"
    assert main([str(config_file), "--output", str(out), "--scenarios", "fashion-split",
                 "--strategies", "candidate-sets,joint,joint-distilled"]) == 0  # fmt: skip
    frame = pd.read_csv(out / "results.csv")
    assert list(frame["strategy"]) == ["candidate-sets", "joint", "joint-distilled"]
    assert frame.set_index("strategy").loc[["joint", "joint-distilled"], "replay"].all()
    assert "## Oracle check" in (out / "summary.md").read_text()


def test_costly_runs_start_first():
    """Parallel jobs start the runs with the most epochs and the largest epochs first: the
    oracle (up to 20 epochs, with old images), then replay, then the rest in grid order."""
    from experiments.config import load_config
    from experiments.grid import strategy_runs
    from experiments.steps import expected_cost

    config = load_config()  # the quick profile
    runs = strategy_runs(list(config.strategies), dict(config.strategy_overrides))
    cost = {run.label: expected_cost(config, run) for run in runs}
    assert cost["joint-distilled"] > cost["candidate-sets+replay"] > cost["candidate-sets"]
    assert cost["candidate-sets"] == cost["finetune"] == config.train.epochs


def test_workers_use_the_scenarios_the_main_process_shared(monkeypatch):
    from experiments import units
    from experiments.config import load_config

    config_yaml = OmegaConf.to_yaml(load_config())
    built = ["the main process's steps"]
    monkeypatch.setattr(units, "_SHARED", {})
    monkeypatch.setattr(units, "build_scenarios", lambda cfg: pytest.fail("built again"))
    units._scenarios.cache_clear()
    units.share_scenarios({"fashion-split": built}, None)
    scenario_cfg, steps = units._scenarios(config_yaml, "fashion-split")
    assert steps is built and scenario_cfg["name"] == "fashion-split"
    units._scenarios.cache_clear()


@pytest.mark.slow
def test_parallel_retrain_old_trains_each_old_model_once(tmp_path, config_file, capsys):
    out = tmp_path / "retrain"
    argv = [str(config_file), "--output", str(out), "--jobs", "2", "--retrain-old",
            "--scenarios", "fashion-new-class"]  # fmt: skip
    assert main(argv) == 0
    assert "1 old model(s) to train, 2 run(s)" in capsys.readouterr().out
    logs = out / "runs" / "fashion-new-class" / "old-model" / "seed0" / "logs"
    assert [v.name for v in logs.iterdir()] == ["version_0"]  # not again in each chain


def test_trainer_arguments_pass_through(tmp_path, config_file):
    """Any lightning.Trainer argument through the config: accumulation, clipping, logging."""
    out = tmp_path / "acc"
    argv = [str(config_file), "--output", str(out), "--scenarios", "fashion-new-class",
            "--strategies", "finetune", "--set", "train.trainer.accumulate_grad_batches=2",
            "--set", "train.trainer.gradient_clip_val=1.0",
            "--set", "train.trainer.log_every_n_steps=1"]  # fmt: skip
    assert main(argv) == 0
    (metrics,) = (out / "runs").rglob("finetune/seed0/logs/*/metrics.csv")
    logged = pd.read_csv(metrics).dropna(subset=["train/loss"])
    assert list(logged["step"]) == [0]  # 2 batches, accumulated into one optimizer step


def test_named_strategy_variants(tmp_path, config_file):
    """One experiment, two variants of one strategy: each reported under its own name."""
    variants = [
        "finetune",
        {"name": "cs-consistent", "strategy": "candidate-sets",
         "settings": {"distillation": "label_consistent", "remainder_share": 0.9}},
        {"name": "cs-consistent", "strategy": "candidate-sets+replay"},
    ]  # fmt: skip
    config = yaml.safe_load(config_file.read_text())
    path = tmp_path / "variants.yaml"
    path.write_text(yaml.safe_dump({**config, "strategies": variants,
                                    "scenarios": ["fashion-split"]}))  # fmt: skip
    out = tmp_path / "out"
    assert main([str(path), "--output", str(out)]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert sorted(zip(frame["strategy"], frame["replay"], strict=True)) == [
        ("cs-consistent", False), ("cs-consistent", True), ("finetune", False)
    ]  # fmt: skip
    assert (out / "models" / "fashion-split" / "cs-consistent+replay-seed0.pt").is_file()
    bad = {**config, "strategies": [{"name": "x", "strategy": "candidate-sets",
                                     "settings": {"distilation": "set"}}]}  # fmt: skip
    path.write_text(yaml.safe_dump(bad))
    assert main([str(path), "--output", str(tmp_path / "bad")]) == 2


def test_trained_on_names_devices_and_precisions():
    """summary.md's "trained on": rows without a device (or a precision, written before results
    recorded it) do not break it."""
    from experiments.report import trained_on

    frame = pd.DataFrame({"device": ["cpu", "cpu", None], "precision": ["bf16-mixed", None, "x"]})
    assert trained_on(frame) == "cpu at a precision not recorded, cpu at bf16-mixed"
    assert trained_on(pd.DataFrame({"device": ["cpu"]})) == "cpu at a precision not recorded"
    assert trained_on(pd.DataFrame({"miou_all": [0.5]})) == "n/a"


def test_a_resume_that_would_mix_precisions_says_so(monkeypatch):
    """Precision ``auto`` resolves per machine: resuming on a machine where it resolves to
    another precision than the finished runs' is said, not silent."""
    from experiments.config import load_config
    from experiments.grid import strategy_runs
    from experiments.run import resumed_precision_note
    from incremental import devices

    config = load_config()  # the quick profile: step 1 at "auto"
    runs = strategy_runs(list(config.strategies), dict(config.strategy_overrides))
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    if devices.resolve_precision("auto") != "32-true":
        pytest.skip("'auto' is the GPU here")
    finished = [{"precision": "bf16-mixed"}, {"precision": float("nan")}]
    note = resumed_precision_note(finished, config, runs)
    assert note and "['bf16-mixed']" in note and "['32-true']" in note
    assert resumed_precision_note([{"precision": "32-true"}], config, runs) is None
    assert resumed_precision_note([], config, runs) is None


def test_a_resume_at_another_thread_count_says_so():
    """The same experiment in other bits: said, not refused (results.csv records each run's)."""
    from experiments.config import load_config
    from experiments.run import resumed_threads_note

    config = load_config()  # threads 1
    note = resumed_threads_note([{"threads": 2}, {"threads": 1}, {"threads": float("nan")}], config)
    assert note and "[2] thread(s)" in note and "the rest with 1" in note
    assert resumed_threads_note([{"threads": 1.0}, {}], config) is None
    assert resumed_threads_note([], config) is None


def test_threads_are_pinned_only_for_a_single_cpu_device():
    """On a GPU the count changes no result (one thread would only slow the CPU side); with
    several devices Lightning's launcher sets each process's count."""
    import contextlib

    from experiments.config import load_config
    from experiments.run import pinned_threads, run_threads

    def pinned(**train) -> bool:
        config = load_config(
            overrides={"threads": 3, **{f"train.{k}": v for k, v in train.items()}}
        )
        return not isinstance(pinned_threads(config), contextlib.nullcontext)

    assert pinned(accelerator="cpu")
    assert not pinned(accelerator="cuda")
    assert not pinned(accelerator="cpu", devices=2)
    assert not pinned(accelerator="cpu", num_nodes=2)
    # Parallel jobs always compute at `threads` (their workers are pinned where they start).
    gpu = load_config(overrides={"threads": 3, "train.accelerator": "cuda"})
    assert run_threads(gpu, jobs=2) == 3 and run_threads(gpu, jobs=1) is None
    before = torch.get_num_threads()
    with pinned_threads(load_config(overrides={"threads": 3, "train.accelerator": "cpu"})):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
