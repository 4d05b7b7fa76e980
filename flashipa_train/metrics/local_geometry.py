"""Local backbone geometry: consecutive CA-CA distances, bond lengths and bond angles against ideal values,
measured by biotite's `index_distance` and `index_angle` on the atoms named in `ideal_geometry`.

Pairs of residues count as bonded only when they are consecutive in one chain with residue_index
stepping by exactly one (see `Backbone.bonded_to_next`) and the atoms involved are modelled.
"""

from __future__ import annotations

import biotite.structure as struc
import numpy as np

from flashipa_train.metrics.backbone_input import Backbone, as_backbone
from flashipa_train.metrics.ideal_geometry import ANGLE_ATOMS, BOND_ATOMS, IDEAL_BOND_ANGLES, IDEAL_BOND_LENGTHS

CA_CA_ATOMS = ((0, 1), (1, 1))  # CA(i), CA(i+1) as (residue offset, atom)


def atom_indices(backbone: Backbone, atoms: tuple[tuple[int, int], ...]) -> np.ndarray:
    """[P, k] indices into the flattened [L * 4] backbone atoms of every instance of `atoms` (k pairs
    (residue offset 0 or 1, atom 0..3)) whose atoms are all modelled, spanning only bonded residue pairs."""
    spans_next = any(offset == 1 for offset, _ in atoms)
    residues = np.arange(backbone.length - 1 if spans_next else backbone.length)  # [P0]
    keep = backbone.bonded_to_next() if spans_next else np.ones(backbone.length, dtype=bool)  # [P0]
    for offset, atom in atoms:
        keep = keep & backbone.atom_mask[residues + offset, atom]
    residues = residues[keep]  # [P]
    return np.stack([(residues + offset) * 4 + atom for offset, atom in atoms], axis=-1)  # [P, k]


def _flat_coordinates(backbone: Backbone) -> np.ndarray:
    return backbone.atoms.reshape(-1, 3)  # [L * 4, 3]


def consecutive_ca_distances(backbone) -> np.ndarray:
    """[P] CA(i)-CA(i+1) distances (Angstrom) of the bonded, CA-modelled residue pairs."""
    backbone = as_backbone(backbone)
    return struc.index_distance(_flat_coordinates(backbone), atom_indices(backbone, CA_CA_ATOMS))


def ca_ca_distance_stats(backbone) -> tuple[float, float]:
    """(mean, standard deviation) of consecutive CA-CA distances; NaN without any bonded pair."""
    distances = consecutive_ca_distances(backbone)
    if distances.size == 0:
        return float("nan"), float("nan")
    return float(distances.mean()), float(distances.std())


def bond_lengths(backbone: Backbone, bond: str) -> np.ndarray:
    """[P] lengths (Angstrom) of one bond type (a key of IDEAL_BOND_LENGTHS) where both atoms are modelled."""
    return struc.index_distance(_flat_coordinates(backbone), atom_indices(backbone, BOND_ATOMS[bond]))


def bond_angles(backbone: Backbone, angle: str) -> np.ndarray:
    """[P] angles (degrees) of one angle type (a key of IDEAL_BOND_ANGLES) where all three atoms are modelled."""
    return np.degrees(struc.index_angle(_flat_coordinates(backbone), atom_indices(backbone, ANGLE_ATOMS[angle])))


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


def _mean_abs(values: np.ndarray) -> float:
    return float(np.mean(np.abs(values))) if values.size else float("nan")
