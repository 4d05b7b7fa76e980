"""An offline wandb run (no account, no network) of a tiny fit with validation sampling writes its run files:
the event log with the run's config, the learning rate and one series per sampled length, the 3D structures
(wandb.Molecule) and the metric tables."""

import shutil

import pytest

pytest.importorskip("wandb")
pytest.importorskip("biotite")

from test_validation_sampling import DATA, TINY  # noqa: E402
from wandb_records import run_info, table_rows  # noqa: E402

from flashipa_train.config import compose_train_config  # noqa: E402
from flashipa_train.train.cli import train  # noqa: E402


def test_offline_wandb_run_writes_structures_and_tables_without_network(tmp_path, monkeypatch):
    for key in ("WANDB_API_KEY", "WANDB_ENTITY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there: any upload would fail
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    for key, folder in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(key, str(tmp_path / "wandb_home" / folder))
    folder = tmp_path / "pdb"
    folder.mkdir()
    for name in ["3zee.cif.gz", "1qys.pdb.gz", "4zey.cif.gz"]:
        shutil.copy(DATA / name, folder / name)
    overrides = [o for o in TINY if not o.startswith("logger=")] + [
        "logger=wandb",
        "logger.wandb.project=flashipa-test",
        "run_name=tiny",
        "trainer.max_steps=2",
        f"data.pdb_dir={folder}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "++trainer.val_check_interval=2",
    ]
    cfg = compose_train_config(overrides, output_dir=tmp_path / "run")
    assert cfg.logger.wandb.group == "flash_ipa" and cfg.logger.wandb.name == "tiny"
    train(cfg)
    import wandb

    wandb.finish()
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    info = run_info(runs[0])  # waits until wandb-core has written the whole log
    media = runs[0] / "files" / "media"
    assert len(list(media.rglob("*.pdb"))) == 4  # 2 lengths x 2 samples as wandb.Molecule
    tables = {p.name.split("_")[0] for p in media.glob("table/val_sample/*.table.json")}
    assert tables == {"metrics", "by", "vs"}
    assert info["group"] == "flash_ipa" and info["name"] == "tiny"
    assert info["config"]["variant"] == "flash_ipa" and info["config"]["model"]["attention"]["backend"] == "torch"
    summary = info["summary"]
    assert summary["train/lr"] > 0 and summary["trainer/global_step"] == 2  # LearningRateMonitor
    assert summary["sample/L12/ca_ca_mean"] > 0 and summary["sample/L16/ca_ca_mean"] > 0  # one series per length
    assert [row["length"] for row in table_rows(runs[0], "val_sample/by_length")] == [12, 16]
