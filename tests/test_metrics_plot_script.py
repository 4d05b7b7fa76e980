"""scripts/plot_samples.py writes its PNGs and metrics.csv for a folder of sample PDB files."""

import csv
import importlib.util
from pathlib import Path

import pytest

from flashipa_train.io.pdb_writer import write_backbone
from flashipa_train.metrics import iter_backbones

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("plot_samples", ROOT / "scripts" / "plot_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_samples_writes_traces_histograms_and_metrics(tmp_path):
    samples = tmp_path / "samples"
    for backbone in iter_backbones(str(ROOT / "data" / "5eil.pdb.gz"), 2):
        write_backbone(backbone.atoms, samples / f"{backbone.name}.pdb")
    out = tmp_path / "plots"
    load_script().main(
        [str(samples), "--training", str(ROOT / "data" / "2axd.bcif.gz"), "--out", str(out), "--per-sample"]
    )
    for name in ("ca_traces.png", "metric_histograms.png", "traces/5eil_A.png", "traces/5eil_B.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["set"] for r in rows] == ["samples", "samples", "training"]
    assert all(abs(float(r["ca_ca_mean"]) - 3.80) < 0.05 for r in rows)
