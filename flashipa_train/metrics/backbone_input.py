"""One backbone as the metrics read it: coordinates plus the masks and numbering that say which pairs are bonded.

Every metric accepts a `Backbone` or anything `as_backbone` turns into one: a numpy array or torch tensor
[L, 4, 3] (N, CA, C, O), or a dict such as `flashipa_train.data.example_store.load_example` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Backbone:
    """Backbone coordinates of one structure (one or several chains), residues in chain order."""

    atoms: np.ndarray  # [L, 4, 3] float64 Angstrom, N, CA, C, O
    atom_mask: np.ndarray  # [L, 4] bool, True where the atom is modelled
    chain_ids: np.ndarray  # [L] str; consecutive residues of different chains are never bonded
    residue_index: np.ndarray  # [L] int; consecutive residues are bonded only where it steps by exactly 1
    name: str = ""

    @property
    def length(self) -> int:
        return int(self.atoms.shape[0])

    @property
    def ca_mask(self) -> np.ndarray:
        return self.atom_mask[:, 1]  # [L]

    def bonded_to_next(self) -> np.ndarray:
        """[L-1] bool, True where residue i and i+1 are sequence neighbours of one chain (atoms not checked)."""
        same_chain = self.chain_ids[1:] == self.chain_ids[:-1]  # [L-1]
        return same_chain & (np.diff(self.residue_index) == 1)


def as_backbone(
    backbone,
    mask=None,
    chain_ids=None,
    residue_index=None,
    name: str = "",
) -> Backbone:
    """A `Backbone` from a Backbone (returned unchanged), an array/tensor [L, 4, 3], or a dict with "atoms".

    Args:
        backbone: the coordinates in Angstrom, N, CA, C, O per residue.
        mask: [L] residue mask or [L, 4] atom mask (True = modelled); a dict's "atom_mask" when omitted;
            all True otherwise.
        chain_ids: [L] chain id per residue, or one id for all; "A" when omitted.
        residue_index: [L] integer positions; a dict's "residue_index" when omitted; 0..L-1 otherwise.
        name: label carried into the metric rows.
    """
    if isinstance(backbone, Backbone):
        return backbone
    if isinstance(backbone, dict):
        mask = backbone.get("atom_mask") if mask is None else mask
        residue_index = backbone.get("residue_index") if residue_index is None else residue_index
        chain_ids = backbone.get("chain_ids") if chain_ids is None else chain_ids
        name = name or str(backbone.get("name", ""))
        backbone = backbone["atoms"]
    atoms = _to_numpy(backbone).astype(np.float64)
    if atoms.ndim != 3 or atoms.shape[1:] != (4, 3):
        raise ValueError(f"backbone {name or '(unnamed)'}: atoms must be [L, 4, 3] (N, CA, C, O), got {atoms.shape}")
    num_res = atoms.shape[0]
    atom_mask = _atom_mask(mask, num_res, name)
    atom_mask &= np.isfinite(atoms).all(axis=-1)
    if chain_ids is None or isinstance(chain_ids, str):
        chain_ids = np.full(num_res, chain_ids or "A")
    chain_ids = np.asarray(chain_ids).astype(str)
    residue_index = np.arange(num_res) if residue_index is None else _to_numpy(residue_index).astype(np.int64)
    for field, value in (("chain_ids", chain_ids), ("residue_index", residue_index)):
        if value.shape != (num_res,):
            raise ValueError(f"backbone {name or '(unnamed)'}: {field} must have shape [{num_res}], got {value.shape}")
    return Backbone(atoms, atom_mask, chain_ids, residue_index, name)


def _atom_mask(mask, num_res: int, name: str) -> np.ndarray:
    if mask is None:
        return np.ones((num_res, 4), dtype=bool)
    mask = _to_numpy(mask).astype(bool)
    if mask.shape == (num_res,):
        return np.repeat(mask[:, None], 4, axis=1)
    if mask.shape == (num_res, 4):
        return mask.copy()
    raise ValueError(f"backbone {name or '(unnamed)'}: mask must be [L] or [L, 4] with L={num_res}, got {mask.shape}")


def _to_numpy(value) -> np.ndarray:
    """numpy copy of a numpy array or torch tensor (torch is not imported here)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    return np.asarray(value)
