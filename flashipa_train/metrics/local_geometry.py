"""Local backbone geometry: consecutive CA-CA distances, bond lengths and bond angles against ideal values.

Pairs of residues count as bonded only when they are consecutive in one chain with residue_index
stepping by exactly one (see `Backbone.bonded_to_next`) and the atoms involved are modelled.
"""

from __future__ import annotations

import numpy as np

from flashipa_train.metrics.backbone_input import Backbone, as_backbone
from flashipa_train.metrics.ideal_geometry import ANGLE_ATOMS, BOND_ATOMS, IDEAL_BOND_ANGLES, IDEAL_BOND_LENGTHS


def consecutive_ca_distances(backbone) -> np.ndarray:
    """[P] CA(i)-CA(i+1) distances (Angstrom) of the bonded, CA-modelled residue pairs."""
    backbone = as_backbone(backbone)
    ca = backbone.atoms[:, 1]  # [L, 3]
    valid = backbone.bonded_to_next() & backbone.ca_mask[1:] & backbone.ca_mask[:-1]  # [L-1]
    return np.linalg.norm(ca[1:] - ca[:-1], axis=-1)[valid]


def ca_ca_distance_stats(backbone) -> tuple[float, float]:
    """(mean, standard deviation) of consecutive CA-CA distances; NaN without any bonded pair."""
    distances = consecutive_ca_distances(backbone)
    if distances.size == 0:
        return float("nan"), float("nan")
    return float(distances.mean()), float(distances.std())


def bond_lengths(backbone: Backbone, bond: str) -> np.ndarray:
    """[P] lengths (Angstrom) of one bond type (a key of IDEAL_BOND_LENGTHS) where both atoms are modelled."""
    (off_a, atom_a), (off_b, atom_b) = BOND_ATOMS[bond]
    a, a_ok = _atom_with_offset(backbone, off_a, atom_a, needs_next=off_b > off_a)
    b, b_ok = _atom_with_offset(backbone, off_b, atom_b, needs_next=off_b > off_a)
    return np.linalg.norm(a - b, axis=-1)[a_ok & b_ok]


def bond_angles(backbone: Backbone, angle: str) -> np.ndarray:
    """[P] angles (degrees) of one angle type (a key of IDEAL_BOND_ANGLES) where all three atoms are modelled."""
    specs = ANGLE_ATOMS[angle]
    needs_next = any(offset == 1 for offset, _ in specs)
    (a, a_ok), (b, b_ok), (c, c_ok) = (_atom_with_offset(backbone, o, k, needs_next) for o, k in specs)
    u, v = a - b, c - b  # [P, 3]
    cos = np.sum(u * v, axis=-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))[a_ok & b_ok & c_ok]


def bond_deviations(backbone) -> dict[str, float]:
    """Mean absolute deviation from ideal of every bond length (Angstrom) and bond angle (degrees).

    Keys: "bond_dev_N-CA", ..., "angle_dev_N-CA-C", ...; NaN for a type with no modelled instance.
    """
    backbone = as_backbone(backbone)
    out = {}
    for bond, ideal in IDEAL_BOND_LENGTHS.items():
        out[f"bond_dev_{bond}"] = _mean_abs(bond_lengths(backbone, bond) - ideal)
    for angle, ideal in IDEAL_BOND_ANGLES.items():
        out[f"angle_dev_{angle}"] = _mean_abs(bond_angles(backbone, angle) - ideal)
    return out


def _atom_with_offset(backbone: Backbone, offset: int, atom: int, needs_next: bool) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates [P, 3] and modelled flags [P] of `atom` in residue i + offset.

    With needs_next, P = L - 1 and only bonded pairs (i, i+1) are flagged; otherwise P = L.
    """
    if not needs_next:
        return backbone.atoms[:, atom], backbone.atom_mask[:, atom]
    bonded = backbone.bonded_to_next()  # [L-1]
    rows = slice(1, None) if offset == 1 else slice(None, -1)
    return backbone.atoms[rows, atom], backbone.atom_mask[rows, atom] & bonded


def _mean_abs(values: np.ndarray) -> float:
    return float(np.mean(np.abs(values))) if values.size else float("nan")
