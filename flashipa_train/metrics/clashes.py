"""CA-CA clashes found with a biotite cell list: memory grows with L, never with L x L.

A clash is a pair of modelled CA atoms closer than `CLASH_DISTANCE` (3 A) that are not sequence
neighbours: residues of different chains always count, residues of one chain count when their
residue_index differs by 2 or more. Real proteins have none: CA(i)-CA(i+2) is at least about 4.5 A,
and non-local CA-CA contacts are at least about 3.5 A.
"""

from __future__ import annotations

import biotite.structure as struc
import numpy as np

from flashipa_train.metrics.backbone_input import as_backbone

CLASH_DISTANCE = 3.0
MIN_SEQUENCE_SEPARATION = 2
# Cells per modelled atom at most: bounds the cell grid of spread-out (e.g. untrained) samples.
MAX_CELLS_PER_ATOM = 8
# Query rows per chunk: bounds the [rows, max neighbours] index array for collapsed samples.
QUERY_CHUNK = 512


def ca_clash_pairs(backbone, distance: float = CLASH_DISTANCE) -> np.ndarray:
    """[K, 2] residue indices (i < j) of the clashing CA pairs (see the module docstring)."""
    backbone = as_backbone(backbone)
    residues = np.flatnonzero(backbone.ca_mask)  # [M] residues with a CA
    if residues.size < 2:
        return np.zeros((0, 2), dtype=np.int64)
    ca = backbone.atoms[residues, 1]  # [M, 3]
    cell_list = struc.CellList(ca, cell_size=_cell_size(ca, distance))
    chains = backbone.chain_ids[residues]  # [M]
    positions = backbone.residue_index[residues]  # [M]
    found = []
    for start in range(0, residues.size, QUERY_CHUNK):
        rows = np.arange(start, min(start + QUERY_CHUNK, residues.size))  # [C]
        neighbours = cell_list.get_atoms(ca[rows], radius=distance)  # [C, max neighbours], -1 padded
        i = np.repeat(rows, neighbours.shape[1])  # [C * max neighbours]
        j = neighbours.reshape(-1)
        keep = j > i  # drops padding (-1), self pairs and the (j, i) duplicates
        i, j = i[keep], j[keep]
        # get_atoms includes the radius itself; a clash is strictly closer
        closer = np.linalg.norm(ca[i] - ca[j], axis=-1) < distance
        separated = (chains[i] != chains[j]) | (np.abs(positions[i] - positions[j]) >= MIN_SEQUENCE_SEPARATION)
        keep = closer & separated
        found.append(np.stack([residues[i[keep]], residues[j[keep]]], axis=-1))
    return np.concatenate(found, axis=0)


def clashes_per_100_residues(backbone, distance: float = CLASH_DISTANCE) -> float:
    """100 * (number of clashing CA pairs) / (number of residues with a CA)."""
    backbone = as_backbone(backbone)
    num_ca = int(backbone.ca_mask.sum())
    if num_ca == 0:
        return float("nan")
    return 100.0 * ca_clash_pairs(backbone, distance).shape[0] / num_ca


def _cell_size(ca: np.ndarray, distance: float) -> float:
    """The clash distance, or larger so that the cell grid has at most MAX_CELLS_PER_ATOM cells per atom."""
    extent = np.ptp(ca, axis=0) + distance  # [3]
    volume_per_cell = float(np.prod(extent)) / (MAX_CELLS_PER_ATOM * ca.shape[0])
    return max(distance, volume_per_cell ** (1.0 / 3.0))
