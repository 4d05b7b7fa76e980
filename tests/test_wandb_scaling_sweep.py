"""An offline wandb run of a 2-point scaling sweep, read back from its files (no account, no network): one
run per point with the variant and length in its config and the step figures in its summary, and one summary
run whose table holds both points and whose charts plot them per variant."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("wandb")
pytestmark = pytest.mark.slow  # a two-job multirun in a subprocess: about 35 s on 2 cores

from wandb_records import run_info, table_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("wandb_sweep")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        PYTHONPATH=str(ROOT),
        HYDRA_FULL_ERROR="1",
        WANDB_MODE="offline",
        NETRC=str(tmp_path / "no_netrc"),
        WANDB_BASE_URL="http://127.0.0.1:9",  # nothing listens there: any upload would fail
        WANDB_CONFIG_DIR=str(tmp_path / "wandb_config"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb_cache"),
    )
    command = [
        sys.executable,
        "-m",
        "flashipa_train.scaling.cli",
        "-m",
        "experiment=scaling_smoke",
        "logger=wandb",
        "scaling_attention=flash_ipa-torch",
        "data.length=16,32",
        f"paths.log_dir={tmp_path}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "scaling_smoke" / "multiruns").iterdir()
    return sweep_dir


def test_every_sweep_point_is_its_own_run_with_its_config_and_figures(sweep):
    runs = sorted(sweep.glob("*/wandb/offline-run-*"))
    assert [run.parents[1].name for run in runs] == ["0", "1"]  # one run folder per job, none shared
    infos = [run_info(run) for run in runs]
    assert [info["config"]["length"] for info in infos] == [16, 32]
    for info in infos:
        config = info["config"]
        assert config["variant"] == "flash_ipa" and config["backend"] == "torch" and config["compile"] == "off"
        assert config["precision"] == "32-true" and config["device"] and config["torch"] and config["lightning"]
        assert config["model"]["attention"]["name"] == "flash_ipa" and config["data"]["length"] == config["length"]
        assert info["group"] == "flash_ipa-torch" and info["name"].endswith(f"_L{config['length']}")
        summary = info["summary"]
        assert summary["scaling/status"] == "ok" and summary["scaling/step_ms"] > 0
        assert summary["scaling/length"] == config["length"]


def test_summary_run_holds_a_table_of_all_points_and_log_log_charts(sweep):
    (summary_run,) = sweep.glob("wandb/offline-run-*")
    info = run_info(summary_run)
    assert info["group"] == "scaling-summary" and info["config"]["lengths"] == [16, 32]
    rows = table_rows(summary_run, "scaling_summary/points")
    assert [(r["label"], r["length"], r["status"]) for r in rows] == [
        ("flash_ipa/torch", 16, "ok"),
        ("flash_ipa/torch", 32, "ok"),
    ]
    assert all(r["step_ms"] > 0 for r in rows)
    chart = table_rows(summary_run, "scaling_summary/step_ms_loglog_table")
    assert sorted(r["step"] for r in chart) == [4.0, 5.0]  # log2 of 16 and 32, one line (key) per variant
    assert {r["lineKey"] for r in chart} == {"flash_ipa/torch"}
    assert info["summary"]["points_ok"] == 2 and "slope/step_ms/flash_ipa/torch" in info["summary"]
    assert (sweep / "scaling.md").is_file()
