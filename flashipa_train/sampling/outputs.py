"""What sampling leaves on disk: structure files, per-sample metrics.csv, a per-length summary, and (without
biotite) `samples.pt`, the one tensor format that flashipa-sample and the end of flashipa-train write and
`flashipa-sample from_samples=...` reads."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import torch

from flashipa_train.sampling.generate import GeneratedBackbone

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.pt"

# columns of the printed summary table (the CSV files hold every metric)
SUMMARY_COLUMNS = (
    "count",
    "ca_ca_mean",
    "ca_ca_std",
    "bond_dev_C-N+",
    "angle_dev_N-CA-C",
    "clashes_per_100",
    "rg_ratio",
    "helix_fraction",
    "strand_fraction",
    "coil_fraction",
    "diversity_mean_tm",
    "novelty_max_tm",
)


def write_structure_files(
    backbones: list[GeneratedBackbone], out_dir: str | Path, formats=("pdb", "cif")
) -> list[Path]:
    """`out_dir/<name>.pdb`, `out_dir/cif/<name>.cif` and `out_dir/bcif/<name>.bcif` (the `formats` asked for)
    per backbone (`name` = len<L>_<i>); backbones with NaN
    or Inf coordinates (a diverged sampler) are skipped with a warning. Returns the written paths."""
    from flashipa_train.io.pdb_writer import write_backbone

    out_dir = Path(out_dir)
    folders = {"pdb": out_dir, "cif": out_dir / "cif", "bcif": out_dir / "bcif"}
    unknown = set(formats) - set(folders)
    if unknown:
        raise ValueError(f"formats: {sorted(unknown)} not supported; choose from {sorted(folders)}.")
    written = []
    for backbone in backbones:
        if not backbone.finite:
            log.warning("sample %s has non-finite coordinates; no structure file written", backbone.name)
            continue
        for fmt in formats:
            written.append(write_backbone(backbone.atoms, folders[fmt] / f"{backbone.name}.{fmt}"))
    return written


def save_samples(backbones: list[GeneratedBackbone], path: str | Path) -> Path:
    """`path` (a samples.pt): {"len<L>_<i>": [L, 4, 3] float32 tensor (N, CA, C, O, Angstrom)} per backbone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({b.name: torch.from_numpy(b.atoms) for b in backbones}, path)
    return path


def load_samples(path: str | Path) -> list[GeneratedBackbone]:
    """The backbones of a samples.pt written by `save_samples`, in file order."""
    saved = torch.load(path, weights_only=True)
    if not isinstance(saved, dict) or not all(isinstance(name, str) and name.startswith("len") for name in saved):
        raise ValueError(
            f"{path}: not a samples.pt of flashipa-sample/flashipa-train (expected "
            f"{{'len<L>_<i>': [L, 4, 3] tensor}}, found "
            f"keys {list(saved)[:4] if isinstance(saved, dict) else type(saved).__name__})"
        )
    backbones = []
    for name, atoms in saved.items():
        length, index = name.removeprefix("len").split("_")
        if tuple(atoms.shape) != (int(length), 4, 3):
            raise ValueError(f"{path}: sample {name!r} has shape {tuple(atoms.shape)}, expected ({length}, 4, 3)")
        backbones.append(GeneratedBackbone(int(length), int(index), atoms.float().numpy()))
    return backbones


def sample_metric_rows(backbones: list[GeneratedBackbone], reference_set=None) -> list[dict]:
    """`flashipa_train.metrics.sample_metrics` of every backbone (named len<L>_<i>), with the novelty columns
    when `reference_set` (training backbones or a path) is given."""
    from flashipa_train.metrics import as_backbone, sample_metrics

    return sample_metrics([as_backbone(b.atoms, name=b.name) for b in backbones], reference_set=reference_set)


def summary_by_length(rows: list[dict], backbones: list[GeneratedBackbone], diversity_method: str | None) -> dict:
    """{"<L>": summary, ..., "all": summary} of `summarize` over the rows of each length and of all rows;
    per length also the mean pairwise TM-score (`diversity_method` "structural" or "aligned"; None: skipped)."""
    from flashipa_train.metrics import as_backbone, summarize

    summaries = {}
    for length in sorted({b.length for b in backbones}):
        chosen = [i for i, b in enumerate(backbones) if b.length == length]
        group = [as_backbone(backbones[i].atoms) for i in chosen] if diversity_method else None
        summaries[str(length)] = summarize([rows[i] for i in chosen], group, tm_method=diversity_method or "structural")
    summaries["all"] = summarize(rows)
    diversities = [s["diversity_mean_tm"] for s in summaries.values() if "diversity_mean_tm" in s]
    if diversities:
        finite = [d for d in diversities if math.isfinite(d)]
        summaries["all"]["diversity_mean_tm"] = sum(finite) / len(finite) if finite else float("nan")
    return summaries


def write_rows_csv(rows: list[dict], path: str | Path, first_column: str | None = None) -> Path:
    """Rows (dicts) as CSV with the union of their keys as columns, `first_column` first when given."""
    columns = list(dict.fromkeys(([first_column] if first_column else []) + [k for row in rows for k in row]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_summary_table(summaries: dict[str, dict]) -> str:
    """Fixed-width text table: one row per length/set, the SUMMARY_COLUMNS present in any summary."""
    columns = [c for c in SUMMARY_COLUMNS if any(c in s for s in summaries.values())]
    widths = [max(len(c), 7) for c in columns]
    lines = ["set".ljust(10) + " ".join(c.rjust(w) for c, w in zip(columns, widths))]
    for name, summary in summaries.items():
        cells = [_format(summary.get(c, float("nan"))).rjust(w) for c, w in zip(columns, widths)]
        lines.append(str(name).ljust(10) + " ".join(cells))
    return "\n".join(lines)


def _format(value) -> str:
    if isinstance(value, int):
        return str(value)
    return "nan" if not math.isfinite(value) else f"{value:.3f}"
