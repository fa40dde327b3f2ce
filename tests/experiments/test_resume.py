"""Killed runs resume: a step-1 run or an old model SIGKILLed mid-epoch continues from its last
checkpoint and ends with the metrics of an uninterrupted run; output folders are never reused
silently."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pandas as pd
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from experiments.grid import strategy_runs
from experiments.outputs import STRATEGIES, strategies_record
from experiments.run import main
from experiments.steps import resume_checkpoint

#: 8 steps per epoch (32 draws / batch 4), 3 epochs; the kill comes at step 12, mid-epoch 1,
#: after epoch 0's checkpoint.
STEPS_PER_EPOCH, KILL_AT_STEP = 8, 12
CONFIG = {
    "name": "resume",
    "scenarios": ["fashion-new-class"],
    "strategies": ["candidate-sets"],
    "seeds": [0],
    "wandb": "disabled",
    "jobs": 1,  # in this process (a test of parallel jobs sets its own)
    "train_old": {"epochs": 1, "batch_size": 4, "progress_bar": False, "limit_train_batches": 2},
    "train": {
        "epochs": 3,
        "epoch_size": 4 * STEPS_PER_EPOCH,
        "batch_size": 4,
        "progress_bar": False,
        "deterministic": True,
    },
    "scenario_overrides": {
        "fashion": {
            "sizes": {"old_train": 12, "new_train": 12, "val": 4, "test": 4, "old_val": 4},
            "image_size": 32,
        }
    },
}

#: Runs the experiment and SIGKILLs itself at a global step of step-1 training (argv[4]
#: "step") or of the old model's training ("old").
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    from experiments.run import main
    from incremental import trainer as trainers

    class KillAt(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            old_model = module.teacher is None
            if old_model == (sys.argv[4] == "old") and trainer.global_step == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: a real crash

    make_trainer = trainers.make_trainer
    def killing_trainer(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.callbacks.append(KillAt())
        return trainer

    trainers.make_trainer = killing_trainer
    sys.exit(main([sys.argv[1], "--output", sys.argv[2]]))
    """
)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "cache_dir": str(tmp_path / "cache")}))
    return path


def run_killed(tmp_path, config_file, killed, step: int, phase: str) -> None:
    """The experiment in another process, SIGKILLed at ``step`` of ``phase`` ("step"/"old")."""
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    # The same thread count as this process: CPU kernels' summation order depends on it.
    threads = str(torch.get_num_threads())
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": threads}
    process = subprocess.run(
        [sys.executable, str(script), str(config_file), str(killed), str(step), phase],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -9, process.stderr[-2000:]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_metrics(tmp_path, config_file, capsys):
    killed = tmp_path / "killed"
    run_killed(tmp_path, config_file, killed, KILL_AT_STEP, "step")
    checkpoints = killed / "runs" / "fashion-new-class" / "candidate-sets" / "seed0" / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["global_step"] == STEPS_PER_EPOCH  # epoch 0 done, epoch 1 was cut
    assert not (killed / "results.csv").exists()

    # Without a flag the folder is refused; with --resume the run continues.
    assert main([str(config_file), "--output", str(killed)]) == 2
    capsys.readouterr()
    assert main([str(config_file), "--output", str(killed), "--resume"]) == 0
    assert f"resuming from {checkpoints / 'last.ckpt'}" in capsys.readouterr().out
    assert main([str(config_file), "--output", str(tmp_path / "straight")]) == 0
    resumed = pd.read_csv(killed / "results.csv")
    straight = pd.read_csv(tmp_path / "straight" / "results.csv")
    metrics = [c for c in straight if c.startswith(("miou", "iou/", "hiou"))]
    # CPU, deterministic algorithms, per-draw augmentation seeds: equal to float precision.
    pd.testing.assert_frame_equal(resumed[metrics], straight[metrics], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_an_old_model_killed_while_training_resumes_to_the_same_model(tmp_path, capsys):
    # Step 0 of 3 epochs x 2 batches, killed at step 3 (mid-epoch 1, after epoch 0's
    # checkpoint); a one-batch step 1 shows the old model through the step's scores. The
    # killed folder is moved before the resume (copied to another disk or machine).
    config = {
        **CONFIG,
        "cache_dir": str(tmp_path / "cache"),
        "train_old": {**CONFIG["train_old"], "epochs": 3, "deterministic": True},
        "train": {**CONFIG["train"], "epochs": 1, "limit_train_batches": 1},
    }
    config_file = tmp_path / "resume-old.yaml"
    config_file.write_text(yaml.safe_dump(config))
    run_killed(tmp_path, config_file, tmp_path / "killed", 3, "old")
    killed = tmp_path / "moved"
    (tmp_path / "killed").rename(killed)
    checkpoints = killed / "runs" / "fashion-new-class" / "old-model" / "seed0" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"] == 2
    assert not list((tmp_path / "cache").glob("old-*.pt"))  # not finished: not cached

    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*dirpath has changed.*")  # the best score kept
        assert main([str(config_file), "--output", str(killed), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming from {checkpoints / 'last.ckpt'}" in printed
    assert f"checkpoint written in {tmp_path / 'killed'}" in printed
    assert not list(checkpoints.glob("*-v1.ckpt"))  # continued, not started again beside
    straight = tmp_path / "straight"
    cache = f"cache_dir={tmp_path / 'straight-cache'}"  # its own old model, trained straight
    assert main([str(config_file), "--output", str(straight), "--set", cache]) == 0
    resumed, straight = (pd.read_csv(d / "results.csv") for d in (killed, straight))
    metrics = [c for c in straight if c.startswith(("miou", "iou/", "hiou", "old_model_"))]
    assert "old_model_miou" in metrics
    pd.testing.assert_frame_equal(resumed[metrics], straight[metrics], atol=1e-6, rtol=0)
    (cached,) = (tmp_path / "cache").glob("old-*.pt")
    (trained_straight,) = (tmp_path / "straight-cache").glob("old-*.pt")
    assert cached.name == trained_straight.name  # one cache key: the same settings


def test_resume_keeps_finished_runs_and_checks_the_config(tmp_path, config_file, capsys):
    out = tmp_path / "out"
    fast = ["--set", "train.epochs=1", "--set", "train.limit_train_batches=2"]
    assert main([str(config_file), "--output", str(out), *fast]) == 0
    before = (out / "results.csv").read_text()
    capsys.readouterr()
    assert main([str(config_file), "--output", str(out), "--resume", *fast]) == 0
    assert "finished before: kept" in capsys.readouterr().out
    assert (out / "results.csv").read_text() == before
    # Display settings may change: they change what is printed, not what is trained.
    quiet = ["--set", "train.progress_bar=false", "--set", "train_old.progress_bar=false"]
    assert main([str(config_file), "--output", str(out), "--resume", *fast, *quiet]) == 0
    assert (out / "results.csv").read_text() == before
    # train_old's image logging is part of the old model's cache key: refused, not retrained.
    images = ["--set", "train_old.log_images=0"]
    assert main([str(config_file), "--output", str(out), "--resume", *fast, *quiet, *images]) == 2
    assert "train_old.log_images" in capsys.readouterr().err
    # A different config is another experiment: refused, naming the key and both values.
    assert main([str(config_file), "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs (1 in" in err and "this run)" in err
    # 2 batches are not 2.0 (a fraction), though 2 == 2.0 in Python.
    fraction = ["--set", "train.epochs=1", "--set", "train.limit_train_batches=2.0"]
    assert main([str(config_file), "--output", str(out), "--resume", *fraction]) == 2
    assert "train.limit_train_batches (2 in" in capsys.readouterr().err
    assert main([str(config_file), "--output", str(out), "--resume", "--overwrite"]) == 2
    assert main([str(config_file), "--output", str(tmp_path / "empty"), "--resume"]) == 2


def test_resume_refuses_a_strategy_that_trains_differently_now(tmp_path, config_file, capsys):
    """strategies.yaml records what each strategy trained as, code defaults included: a resume
    after a default changed is refused, naming the strategy and the setting; a folder from
    before the record resumes without one (today's code cannot vouch for its finished runs)."""
    out = tmp_path / "out"
    fast = ["--set", "train.epochs=1", "--set", "train.limit_train_batches=2"]
    assert main([str(config_file), "--output", str(out), *fast]) == 0
    record = yaml.safe_load((out / STRATEGIES).read_text())
    assert record == strategies_record(strategy_runs(["candidate-sets"], {}))
    # As if the code's default distillation weight had been 2.0 when the experiment started.
    (kd,) = [t for t in record["candidate-sets"]["terms"] if t["type"] == "SetKD"]
    kd["weight"] = 2.0
    (out / STRATEGIES).write_text(yaml.safe_dump(record, sort_keys=False))
    capsys.readouterr()
    assert main([str(config_file), "--output", str(out), "--resume", *fast]) == 2
    err = capsys.readouterr().err
    assert "candidate-sets: terms.1.weight (2.0 in" in err and "1.0 in today's code" in err
    (out / STRATEGIES).unlink()
    assert main([str(config_file), "--output", str(out), "--resume", *fast]) == 0
    assert not (out / STRATEGIES).exists()


def test_overwrite_replaces_the_whole_experiment(tmp_path, config_file):
    out = tmp_path / "out"
    fast = ["--set", "train.epochs=1", "--set", "train.limit_train_batches=2"]
    assert main([str(config_file), "--output", str(out), *fast]) == 0
    stale = out / "runs" / "stale.txt"
    stale.write_text("from an older run")
    assert main([str(config_file), "--output", str(out), "--overwrite", *fast]) == 0
    assert not stale.exists() and (out / "results.csv").exists()


def fake_checkpoint(path, step: int, tag: str | None) -> None:
    callbacks = {} if tag is None else {"CheckpointTag": {"tag": tag}}
    torch.save({"global_step": step, "callbacks": callbacks}, path)


def test_resume_reads_the_furthest_last_checkpoint_of_its_settings(tmp_path, capsys):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    fake_checkpoint(checkpoints / "last.ckpt", 40, "other-key")  # other settings, further on
    fake_checkpoint(checkpoints / "last-v1.ckpt", 10, "key")
    fake_checkpoint(checkpoints / "last-v2.ckpt", 20, "key")  # a run started again beside
    resume = OmegaConf.create({"resume": True})
    assert resume_checkpoint(resume, tmp_path, "key") == str(checkpoints / "last-v2.ckpt")
    assert f"not resuming {checkpoints / 'last.ckpt'}" in capsys.readouterr().out
    assert resume_checkpoint(resume, tmp_path, "third-key") is None
    assert resume_checkpoint(resume, tmp_path) == str(checkpoints / "last.ckpt")  # untagged
    assert resume_checkpoint(OmegaConf.create({"resume": False}), tmp_path, "key") is None
    assert resume_checkpoint(resume, tmp_path / "none") is None


def test_a_folder_from_before_the_record_resumes_only_as_it_started(tmp_path):
    """A folder without strategies.yaml started before replay had defaults: resuming it with a
    replay those defaults change is refused (its finished runs had none); with the former
    settings pinned it resumes, still without a record."""
    from experiments.config import ConfigError
    from experiments.outputs import record_before_replay_defaults, write_strategies

    out = tmp_path / "old"
    out.mkdir()
    pd.DataFrame([{"scenario": "s", "strategy": "candidate-sets", "replay": True, "seed": 0}]
                 ).to_csv(out / "results.csv", index=False)  # fmt: skip
    former = {"candidate-sets": {"contrast": None, "self_training": None}}
    for overrides, refused in (({}, True), (former, False)):
        today = strategy_runs(["candidate-sets+replay"], overrides)
        then = record_before_replay_defaults(["candidate-sets+replay"], overrides)
        if refused:
            with pytest.raises(ConfigError, match=r"started before 2026-12-07.*candidate-sets"
                               r"\+replay: terms .*FamilyContrast.*pin the former settings "
                               r"\(strategy_overrides: \{candidate-sets: \{contrast: null, "
                               r"self_training: null\}\}\)"):  # fmt: skip
                write_strategies(out, today, True, then)
        else:
            write_strategies(out, today, True, then)
        assert not (out / STRATEGIES).exists()


def test_the_former_replay_pin_restores_each_factory_s_own_defaults():
    """The pin a refused resume suggests sets each replay default back to the factory's own
    value (null for candidate sets; 10.0 for a factory whose signature says 10.0)."""
    from experiments.outputs import _former_replay_pin
    from incremental.strategies import create_strategy, register_strategy, registry

    def pinned(kd_weight: float = 10.0):
        return create_strategy("mib", {"kd_weight": kd_weight})

    register_strategy("test-pinned", replay_defaults={"kd_weight": 2.0})(pinned)
    try:
        runs = strategy_runs(["test-pinned+replay", "candidate-sets+replay", "mib"], {})
        assert _former_replay_pin(runs) == (
            "{test-pinned: {kd_weight: 10.0}, "
            "candidate-sets: {contrast: null, self_training: null}}"
        )
        assert _former_replay_pin(strategy_runs(["test-pinned"], {})) == "{}"
    finally:
        registry._FACTORIES.pop("test-pinned")
        registry._REPLAY_DEFAULTS.pop("test-pinned")
