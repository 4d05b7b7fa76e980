"""Scaling-study pieces on their own: failures recorded as rows, the results table, the max-length search
and the synthetic DataModule's rank sharding."""

import math
from types import SimpleNamespace

import pytest
import torch

from flashipa_train.config import compose_train_config
from flashipa_train.data.synthetic import SyntheticDataModule, batch_size_for
from flashipa_train.scaling.max_length import search_max_length
from flashipa_train.scaling.report import fitted_slope
from flashipa_train.scaling.results import read_rows
from flashipa_train.scaling.sweep_point import run_scaling_point


def _scaling_config(tmp_path, extra=()):
    return compose_train_config(
        ["experiment=scaling_smoke", f"scaling.results_dir={tmp_path}", *extra], output_dir=tmp_path / "run"
    )


def _timed_train(summary):
    """A stand-in for `train(cfg, extra_callbacks)` whose StepTimer ends with `summary`."""

    def fake_train(cfg, extra_callbacks):
        (timer,) = extra_callbacks
        assert (timer.warmup_steps, timer.timed_steps) == (cfg.scaling.warmup_steps, cfg.scaling.timed_steps)
        timer.summary = summary
        return {}

    return fake_train


@pytest.mark.parametrize(
    "error, status",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "out of memory"),
        (ValueError("bad value\nsecond line"), "failed: ValueError: bad value"),
    ],
)
def test_a_failed_point_becomes_a_row_and_the_call_returns(tmp_path, error, status):
    def failing_train(cfg, extra_callbacks):
        raise error

    row = run_scaling_point(_scaling_config(tmp_path, ["data.length=48"]), failing_train)
    assert row["status"] == status
    rows = read_rows(tmp_path)
    assert len(rows) == 1 and rows[0]["status"] == status and rows[0]["length"] == 48
    assert rows[0]["label"] == "flash_ipa/auto" and rows[0]["batch_size"] == 1  # 64 tokens // 48
    assert read_rows(tmp_path / "scaling_results.csv")[0]["status"] == status


def test_compile_and_checkpointing_options_name_their_own_line(tmp_path):
    """Rows that differ only in torch.compile or block checkpointing must not share a plot line."""
    extra = ["data.length=32", "compile={mode:reduce-overhead}", "model.checkpoint_blocks=2"]
    row = run_scaling_point(_scaling_config(tmp_path, extra), _timed_train({"step_ms": 1.0}))
    assert row["compile"] == "mode=reduce-overhead" and row["checkpoint_blocks"] == 2
    assert row["label"] == "flash_ipa/auto compile(mode=reduce-overhead) ckpt2"
    plain = run_scaling_point(_scaling_config(tmp_path, ["data.length=32"]), _timed_train(None))
    assert plain["label"] == "flash_ipa/auto" and plain["compile"] == "off"
    assert plain["status"] == "failed: no timed steps (raise trainer.max_steps)"


def test_rows_of_successive_points_share_one_table(tmp_path):
    timing = {"step_ms": 10.0, "residues_per_s": 6400.0, "peak_gib": math.nan, "loss": 1.0}
    for length in (16, 32):
        run_scaling_point(_scaling_config(tmp_path, [f"data.length={length}"]), _timed_train(timing))
    rows = read_rows(tmp_path)
    assert [(r["length"], r["status"], r["peak_gib"]) for r in rows] == [(16, "ok", None), (32, "ok", None)]


def test_max_length_search_doubles_then_bisects_to_the_resolution():
    probe = lambda length: (length <= 300, "ok" if length <= 300 else "out of memory")  # noqa: E731
    found = search_max_length(probe, start=64, limit=4096, resolution=16)
    assert found["max_ok_length"] == 288 and found["min_failed_length"] == 304 and found["complete"]
    assert found["failure"] == "out of memory"
    assert [p["length"] for p in found["probes"]][:4] == [64, 128, 256, 512]


def test_max_length_search_stops_at_the_limit_and_when_even_the_start_fails():
    assert search_max_length(lambda n: (True, "ok"), 64, 256, 16)["max_ok_length"] == 256
    found = search_max_length(lambda n: (n <= 40, "x"), 64, 256, 16)
    assert found["max_ok_length"] == 32 and found["min_failed_length"] == 48


def test_fitted_slope_recovers_a_power_law():
    rows = [{"length": n, "status": "ok", "step_ms": 3.0 * n**1.5} for n in (1024, 2048, 4096, 8192)]
    rows.append({"length": 16384, "status": "out of memory", "step_ms": None})
    slope, first, last = fitted_slope(rows, "step_ms", min_length=2048)
    assert slope == pytest.approx(1.5) and (first, last) == (2048, 8192)


def test_synthetic_batch_size_follows_the_token_budget():
    assert [batch_size_for(n, None, 2048) for n in (128, 256, 4096)] == [16, 8, 1]
    assert batch_size_for(256, 3, 2048) == 3


def test_synthetic_datamodule_gives_each_rank_its_own_batches():
    sources = []
    for rank in (0, 1):
        module = SyntheticDataModule(length=8, tokens_per_batch=16, num_train_batches=3, num_distinct=6)
        module.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        module.setup()
        batches = list(module.train_dataloader())
        assert len(batches) == 3 and batches[0]["atoms"].shape == (2, 8, 4, 3)
        sources.append({b["source"][0] for b in batches})
    assert not sources[0] & sources[1]


@pytest.mark.parametrize(
    "overrides",
    [["experiment=scaling"], ["experiment=scaling", "logger=wandb"], ["experiment=scaling_smoke"], ["data=synthetic"]],
)
def test_scaling_configs_compose_and_resolve(overrides, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose_train_config(overrides, output_dir=tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["data"]["_target_"] == "flashipa_train.data.synthetic.SyntheticDataModule"
    if "logger=wandb" in overrides:
        assert resolved["logger"]["wandb"]["group"] == "flash_ipa-auto"
        assert resolved["logger"]["wandb"]["_target_"].endswith("make_wandb_logger")


def test_slurm_launcher_config_is_used_only_when_selected():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from flashipa_train.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        plain = compose(config_name="train", return_hydra_config=True)
        slurm = compose(
            config_name="train", overrides=["hydra/launcher=slurm", "trainer=ddp"], return_hydra_config=True
        )
    assert "submitit" not in plain.hydra.launcher._target_
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher") and slurm.hydra.launcher.tasks_per_node == 2


def test_the_scaling_command_refuses_a_config_without_a_scaling_section(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    command = [sys.executable, "-m", "flashipa_train.scaling.cli", "data=synthetic", f"paths.log_dir={tmp_path}"]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("flashipa-scaling: error: the config has no scaling")
