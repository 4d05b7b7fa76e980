"""Write generated backbones (N, CA, C, O per residue) as PDB, mmCIF or BinaryCIF files with biotite's
`save_structure` (the suffix picks the format).

biotite is imported inside the function so that training on a machine without biotite still imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

STRUCTURE_SUFFIXES = (".pdb", ".cif", ".bcif")


def write_backbone(atoms: torch.Tensor | np.ndarray, path: str | Path, chain_id: str = "A") -> Path:
    """Write one backbone to `path` as a poly-glycine chain, residues numbered from 1.

    Args:
        atoms: backbone coordinates in Angstrom, [L, 4, 3] in the order N, CA, C, O.
        path: destination file ending in .pdb, .cif or .bcif; parent folders are created.
        chain_id: chain identifier written for every atom.
    Returns:
        the path written.
    """
    from biotite.structure.io import save_structure

    from flashipa_train.metrics.atom_array import backbone_to_atom_array

    path = Path(path)
    if path.suffix.lower() not in STRUCTURE_SUFFIXES:
        raise ValueError(
            f"backbone writer: {path} must end in one of {STRUCTURE_SUFFIXES} (the suffix picks the format)."
        )
    coords = atoms.detach().float().cpu().numpy() if isinstance(atoms, torch.Tensor) else np.asarray(atoms)
    if coords.ndim != 3 or coords.shape[1:] != (4, 3):
        raise ValueError(f"backbone writer: atoms must be [L, 4, 3] (N, CA, C, O), got {coords.shape} for {path}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_structure(str(path), backbone_to_atom_array(coords, chain_id=chain_id))
    return path
