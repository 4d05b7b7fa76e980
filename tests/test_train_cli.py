"""The `flashipa-train` command as a user runs it: a subprocess with Hydra overrides, run from the project root."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flashipa_train.train.wandb_logger import make_wandb_logger

ROOT = Path(__file__).resolve().parents[1]
SMALL_STRUCTURES = ["3zee.cif.gz", "4zey.cif.gz", "1qys.pdb.gz"]
TINY_MODEL = [
    "model.c_s=32",
    "model.c_hidden=16",
    "model.num_blocks=1",
    "model.num_heads=2",
    "model.num_qk_points=2",
    "model.num_v_points=2",
    "model.seq_transformer_layers=1",
    "model.seq_transformer_heads=2",
    "model.knn=4",
]


def _flashipa_train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the installed `flashipa-train` (or the same entry point through python -m before installation)."""
    executable = shutil.which("flashipa-train")
    command = [executable] if executable else [sys.executable, "-m", "flashipa_train.train.cli"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="offline", HYDRA_FULL_ERROR="1")
    common = [f"paths.log_dir={tmp_path / 'logs'}", f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=0"]
    result = subprocess.run(command + args + common, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture
def small_folder(tmp_path):
    folder = tmp_path / "pdbs"
    folder.mkdir()
    for name in SMALL_STRUCTURES:
        shutil.copy(ROOT / "data" / name, folder / name)
    return folder


def test_quickstart_command_leaves_a_checkpoint_and_sampled_pdb_files(tmp_path, small_folder):
    from biotite.structure.io.pdb import PDBFile

    result = _flashipa_train(
        [
            "experiment=quickstart",
            f"data.pdb_dir={small_folder}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "sample.lengths=[16,24]",
            "sample.num_steps=3",
        ],
        tmp_path,
    )
    last = Path(re.search(r"last checkpoint: (\S+)", result.stdout).group(1))
    samples = Path(re.search(r"sampled backbones \(PDB\): (\S+)", result.stdout).group(1))
    assert last.is_file() and last.parent.parent.parent.parent == tmp_path / "logs" / "quickstart"
    pdbs = sorted(samples.glob("*.pdb"))
    assert [p.name for p in pdbs] == ["len16_0.pdb", "len24_0.pdb"]
    lengths = [PDBFile.read(str(p)).get_structure(model=1).array_length() for p in pdbs]
    assert lengths == [16 * 4, 24 * 4]


@pytest.mark.slow
def test_multirun_trains_each_attention_variant_in_its_own_folder(tmp_path, small_folder):
    _flashipa_train(
        [
            "-m",
            "model/attention=dense_ipa,flash_ipa",
            "trainer=cpu",
            "logger=csv",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "sample.lengths=[]",
            "data.crop_length=24",
            "data.max_tokens_per_batch=48",
            f"data.pdb_dir={small_folder}",
        ]
        + TINY_MODEL,
        tmp_path,
    )
    runs = sorted((tmp_path / "logs" / "train" / "multiruns").glob("*/*"))
    assert [r.name for r in runs if r.is_dir() and r.name.isdigit()] == ["0", "1"]
    for run in runs:
        if run.name.isdigit():
            assert (run / "checkpoints" / "last.ckpt").is_file()
            assert (run / "csv" / "metrics.csv").is_file()


def test_wandb_logger_goes_offline_without_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    logger = make_wandb_logger(project="flashipa-train-test", group="flash_ipa", name="run", save_dir=str(tmp_path))
    assert logger._offline is True


def test_the_train_command_refuses_a_scaling_config_and_names_the_sweep_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "flashipa_train.train.cli", "experiment=scaling_smoke"]
    done = subprocess.run(
        [*command, f"paths.log_dir={tmp_path}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("flashipa-train: error:") and "`flashipa-scaling -m experiment=scaling ...`" in last
    assert not list(tmp_path.rglob("scaling_results.jsonl"))  # no sweep point ran
