"""Per-backbone metric rows and their summary: what validation logs and the plotting script histograms."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flashipa_train.metrics.backbone_input import as_backbone
from flashipa_train.metrics.clashes import clashes_per_100_residues
from flashipa_train.metrics.compactness import ca_radius_of_gyration, rg_ratio
from flashipa_train.metrics.local_geometry import bond_deviations, ca_ca_distance_stats
from flashipa_train.metrics.secondary_structure import sse_fractions, sse_labels
from flashipa_train.metrics.tm_score import novelty, pairwise_tm_diversity


def backbone_metrics(backbone) -> dict:
    """Metrics of one backbone that need no other structure.

    Keys: name, length, ca_ca_mean, ca_ca_std (Angstrom), bond_dev_* (Angstrom), angle_dev_* (degrees),
    clashes_per_100, radius_of_gyration (Angstrom), rg_ratio, helix_fraction, strand_fraction,
    coil_fraction.
    """
    backbone = as_backbone(backbone)
    ca_ca_mean, ca_ca_std = ca_ca_distance_stats(backbone)
    return {
        "name": backbone.name,
        "length": backbone.length,
        "ca_ca_mean": ca_ca_mean,
        "ca_ca_std": ca_ca_std,
        **bond_deviations(backbone),
        "clashes_per_100": clashes_per_100_residues(backbone),
        "radius_of_gyration": ca_radius_of_gyration(backbone),
        "rg_ratio": rg_ratio(backbone),
        **sse_fractions(sse_labels(backbone)),
    }


def sample_metrics(backbones: list, reference_set: Iterable | None = None) -> list[dict]:
    """`backbone_metrics` of every backbone; with `reference_set` (e.g. training backbones) also the
    novelty columns novelty_max_tm and novelty_nearest (see `tm_score.novelty`)."""
    backbones = [as_backbone(b) for b in backbones]
    rows = [backbone_metrics(b) for b in backbones]
    if reference_set is not None:
        for row, best in zip(rows, novelty(backbones, reference_set)):
            row.update(best)
    return rows


def summarize(rows: list[dict], backbones: list | None = None, tm_method: str = "structural") -> dict:
    """Mean of every numeric column over the rows (NaNs skipped) and the row count as "count".

    With `backbones` (the same samples), adds "diversity_mean_tm": mean pairwise TM-score (lower = more
    diverse) by `tm_method`.
    """
    summary: dict = {"count": len(rows)}
    columns = [key for key, value in (rows[0].items() if rows else ()) if _is_number(value)]
    for key in columns:
        values = np.array([row[key] for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary[key] = float(finite.mean()) if finite.size else float("nan")
    if backbones is not None:
        summary["diversity_mean_tm"] = pairwise_tm_diversity(backbones, tm_method)
    return summary


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
