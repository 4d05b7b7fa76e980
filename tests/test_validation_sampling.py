"""The validation-sampling callback in a tiny fit: per-length and summary sample metrics, and the training set's
reference values, reach the CSV log; PDB files of the samples are written."""

import csv
import shutil
from pathlib import Path

import pytest

pytest.importorskip("biotite")

from flashipa_train.config import compose_train_config  # noqa: E402
from flashipa_train.train.cli import train  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = [
    "model.c_s=16",
    "model.c_hidden=8",
    "model.num_blocks=1",
    "model.num_heads=2",
    "model.num_qk_points=2",
    "model.num_v_points=2",
    "model.attention.c_pair_value=4",
    "model.seq_transformer_layers=1",
    "model.seq_transformer_heads=2",
    "model.knn=4",
    "model.attention.backend=torch",
    "trainer=cpu",
    "logger=csv",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "trainer.enable_model_summary=false",
    "data.crop_length=24",
    "data.max_tokens_per_batch=48",
    "data.num_workers=0",
    "data.pin_memory=false",
    "data.preprocess.min_length=20",
    "data.val_fraction=0.25",
    "scheduler.warmup_steps=2",
    "sample.lengths=[]",
    "trainer.max_steps=4",
    "++trainer.limit_val_batches=1",
    "callbacks.validation_sampling.lengths=[12,16]",
    "callbacks.validation_sampling.num_steps=2",
    "callbacks.validation_sampling.training_set_max=3",
]


def test_validation_sampling_logs_sample_and_training_set_metrics_in_a_tiny_fit(tmp_path):
    folder = tmp_path / "pdb"
    folder.mkdir()
    for name in ["3zee.cif.gz", "4zey.cif.gz", "1qys.pdb.gz", "2axd.bcif.gz"]:
        shutil.copy(DATA / name, folder / name)
    cfg = compose_train_config(
        TINY + [f"data.pdb_dir={folder}", f"data.cache_dir={tmp_path / 'cache'}", "++trainer.val_check_interval=2"],
        output_dir=tmp_path / "run",
    )
    train(cfg)
    rows = list(csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")))
    summary = [r for r in rows if r.get("val_sample/ca_ca_mean")]
    assert [int(r["step"]) for r in summary] == [2, 4]  # 2 validations, each with one series per length
    assert all(float(r["sample/L12/ca_ca_mean"]) > 0 and float(r["sample/L16/ca_ca_mean"]) > 0 for r in summary)
    learning_rates = [float(r["train/lr"]) for r in rows if r.get("train/lr")]  # LearningRateMonitor
    assert len(learning_rates) == 4 and learning_rates[0] != learning_rates[-1]  # the schedule moves
    assert all(abs(float(r["train_set/ca_ca_mean"]) - 3.80) < 0.05 for r in summary)
    assert float(summary[0]["train_set/clashes_per_100"]) == 0.0
    assert len(list((tmp_path / "run" / "validation_samples").glob("step_*/len*_*.pdb"))) == 8


def test_without_biotite_the_callback_warns_once_and_logs_nothing(monkeypatch, caplog):
    from types import SimpleNamespace

    from flashipa_train.train import validation_sampling

    monkeypatch.setattr(validation_sampling.importlib.util, "find_spec", lambda name: None)
    callback = validation_sampling.ValidationSampling(lengths=[8])
    trainer = SimpleNamespace(sanity_checking=False, is_global_zero=True)
    with caplog.at_level("WARNING"):
        for _ in range(3):
            callback.on_validation_end(trainer, pl_module=None)
    assert callback.validations == 3
    assert sum("biotite is not installed" in r.message for r in caplog.records) == 1
