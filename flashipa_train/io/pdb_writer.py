"""Write generated backbones (N, CA, C, O per residue) as PDB files with biotite.

biotite is imported inside the function so that training on a machine without biotite still imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

BACKBONE_ATOM_NAMES = ("N", "CA", "C", "O")
BACKBONE_ELEMENTS = ("N", "C", "C", "O")


def write_backbone_pdb(atoms: torch.Tensor | np.ndarray, path: str | Path, chain_id: str = "A") -> Path:
    """Write one backbone to `path` as PDB: poly-glycine, residues numbered from 1, one chain.

    Args:
        atoms: backbone coordinates in Angstrom, [L, 4, 3] in the order N, CA, C, O.
        path: destination file; parent folders are created.
        chain_id: chain identifier written for every atom.
    Returns:
        the path written.
    """
    import biotite.structure as struc
    from biotite.structure.io.pdb import PDBFile

    coords = atoms.detach().float().cpu().numpy() if isinstance(atoms, torch.Tensor) else np.asarray(atoms)
    if coords.ndim != 3 or coords.shape[1:] != (4, 3):
        raise ValueError(f"write_backbone_pdb: atoms must be [L, 4, 3] (N, CA, C, O), got {coords.shape} for {path}.")
    num_res = coords.shape[0]
    array = struc.AtomArray(num_res * 4)
    array.coord = coords.reshape(-1, 3).astype(np.float32)  # [L*4, 3]
    array.chain_id = np.full(num_res * 4, chain_id)
    array.res_id = np.repeat(np.arange(1, num_res + 1), 4)
    array.res_name = np.full(num_res * 4, "GLY")
    array.atom_name = np.tile(BACKBONE_ATOM_NAMES, num_res)
    array.element = np.tile(BACKBONE_ELEMENTS, num_res)
    array.hetero = np.zeros(num_res * 4, dtype=bool)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdb_file = PDBFile()
    pdb_file.set_structure(array)
    pdb_file.write(str(path))
    return path
