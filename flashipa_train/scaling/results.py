"""The sweep's shared results table: one JSON line per point in `scaling_results.jsonl`, mirrored to
`scaling_results.csv` after every point (so a sweep killed half-way still leaves a readable table)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

RESULTS_JSONL = "scaling_results.jsonl"
RESULTS_CSV = "scaling_results.csv"
# leading CSV columns, in this order; any other keys follow alphabetically
COLUMNS = (
    "variant",
    "backend",
    "length",
    "batch_size",
    "status",
    "step_ms",
    "residues_per_s",
    "peak_gib",
    "loss",
    "step_ms_median",
    "step_ms_min",
    "world_size",
    "precision",
    "compile",
    "checkpoint_blocks",
    "device",
    "wall_s",
)


def append_row(results_dir: str | Path, row: dict) -> Path:
    """Append `row` to RESULTS_JSONL in `results_dir` and rewrite RESULTS_CSV from all rows; returns the CSV."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    with open(results_dir / RESULTS_JSONL, "a") as f:
        f.write(json.dumps(_plain(row)) + "\n")
    return write_csv(read_rows(results_dir), results_dir / RESULTS_CSV)


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a results directory (its RESULTS_JSONL), or of a .jsonl / .csv file."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_JSONL
    if not path.is_file():
        raise FileNotFoundError(f"no scaling results at {path}: run the sweep first (experiment=scaling -m)")
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_csv(rows: list[dict], path: str | Path) -> Path:
    keys = {k for row in rows for k in row}
    columns = [c for c in COLUMNS if c in keys] + sorted(keys.difference(COLUMNS))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def _plain(row: dict) -> dict:
    """JSON-safe copy: NaN becomes null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _number(text: str):
    if text in ("", None):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
