"""The scaling sweep as a user runs it: `flashipa-scaling -m experiment=scaling_smoke` (4 variants x L in
{16, 32}, tiny model, CPU) writes one row per point to the sweep's table, scripts/scaling_report.py turns it
into Markdown and log-log PNGs; DDP with 2 CPU processes and torch.compile (slow)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flashipa_train.scaling.results import read_rows

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="1", WANDB_MODE="offline")


def _scaling(args, tmp_path, timeout=300):
    command = [sys.executable, "-m", "flashipa_train.scaling.cli", *args, f"paths.log_dir={tmp_path / 'logs'}"]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep")
    _scaling(["-m", "experiment=scaling_smoke"], tmp_path)
    (sweep,) = (tmp_path / "logs" / "scaling_smoke" / "multiruns").iterdir()
    return sweep


def test_smoke_sweep_writes_one_timed_row_per_variant_and_length(smoke_sweep):
    rows = read_rows(smoke_sweep)
    assert sorted((r["label"], r["length"]) for r in rows) == sorted(
        (label, n)
        for label in ("dense_ipa", "flash_ipa/torch", "flash_ipa/sdpa", "inattention/torch")
        for n in (16, 32)
    )
    for row in rows:
        assert row["status"] == "ok" and row["steps_timed"] == 2 and row["step_ms"] > 0
        assert row["residues_per_s"] == pytest.approx(64 / (row["step_ms"] / 1e3))  # 64-token batches
        assert row["loss"] > 0 and row["peak_gib"] is None  # no CUDA memory counter on CPU
    assert len(read_rows(smoke_sweep / "scaling_results.csv")) == 8


def test_report_script_writes_markdown_and_log_log_plots(smoke_sweep, tmp_path):
    out = tmp_path / "docs" / "scaling.md"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "scaling_report.py"),
            str(smoke_sweep),
            "--out",
            str(out),
            "--figures-dir",
            str(tmp_path / "docs" / "figures"),
        ],
        check=True,
        env=ENV,
        timeout=120,
    )
    text = out.read_text()
    assert "![scaling_step_time.png](figures/scaling_step_time.png)" in text
    assert "| flash_ipa/sdpa | 16 x 4 | ok |" in text and "Fitted slopes" in text and "256 x 8" in text
    assert (tmp_path / "docs" / "figures" / "scaling_step_time.png").stat().st_size > 10_000
    assert not (tmp_path / "docs" / "figures" / "scaling_peak_memory.png").exists()  # CPU: no memory figures


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_records_one_row_with_both_ranks_throughput(tmp_path):
    _scaling(
        [
            "experiment=scaling_smoke",
            "model.attention={name:flash_ipa,backend:torch}",
            "data.length=16",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            f"scaling.results_dir={tmp_path / 'results'}",
        ],
        tmp_path,
    )
    (row,) = read_rows(tmp_path / "results")
    assert row["status"] == "ok" and row["world_size"] == 2 and row["residues_per_step"] == 128


@pytest.mark.slow
def test_model_compiles_with_torch_compile_and_trains(tmp_path):
    """aot_eager traces the model through dynamo and AOTAutograd without inductor's C++ build (which takes
    minutes on 2 cores); `compile=true` uses inductor."""
    _scaling(
        [
            "experiment=scaling_smoke",
            "model.attention={name:flash_ipa,backend:torch}",
            "data.length=16",
            "compile={backend:aot_eager}",
            f"scaling.results_dir={tmp_path / 'results'}",
        ],
        tmp_path,
    )
    (row,) = read_rows(tmp_path / "results")
    assert row["status"] == "ok" and row["compile"] == "backend=aot_eager" and row["loss"] > 0
    assert row["label"] == "flash_ipa/torch compile(backend=aot_eager)"
