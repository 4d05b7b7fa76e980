"""Write generated backbones (N, CA, C, O per residue) as PDB or mmCIF files with biotite.

biotite is imported inside the functions so that training on a machine without biotite still imports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

STRUCTURE_SUFFIXES = (".pdb", ".cif")


def _backbone_atom_array(atoms: torch.Tensor | np.ndarray, path: Path, chain_id: str):
    """Poly-glycine AtomArray of a [L, 4, 3] backbone (residues numbered from 1, one chain)."""
    from flashipa_train.metrics.atom_array import backbone_to_atom_array

    coords = atoms.detach().float().cpu().numpy() if isinstance(atoms, torch.Tensor) else np.asarray(atoms)
    if coords.ndim != 3 or coords.shape[1:] != (4, 3):
        raise ValueError(f"backbone writer: atoms must be [L, 4, 3] (N, CA, C, O), got {coords.shape} for {path}.")
    return backbone_to_atom_array(coords, chain_id=chain_id)


def write_backbone(atoms: torch.Tensor | np.ndarray, path: str | Path, chain_id: str = "A") -> Path:
    """Write one backbone to `path`, as PDB for a `.pdb` suffix and as mmCIF for `.cif`.

    Args:
        atoms: backbone coordinates in Angstrom, [L, 4, 3] in the order N, CA, C, O.
        path: destination file ending in .pdb or .cif; parent folders are created.
        chain_id: chain identifier written for every atom.
    Returns:
        the path written.
    """
    path = Path(path)
    if path.suffix.lower() not in STRUCTURE_SUFFIXES:
        raise ValueError(f"backbone writer: {path} must end in .pdb or .cif (the suffix picks the format).")
    array = _backbone_atom_array(atoms, path, chain_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".pdb":
        from biotite.structure.io.pdb import PDBFile

        structure_file = PDBFile()
        structure_file.set_structure(array)
    else:
        from biotite.structure.io.pdbx import CIFFile, set_structure

        structure_file = CIFFile()
        set_structure(structure_file, array, data_block=path.stem)
    structure_file.write(str(path))
    return path


def write_backbone_pdb(atoms: torch.Tensor | np.ndarray, path: str | Path, chain_id: str = "A") -> Path:
    """`write_backbone` to a PDB file (kept for callers that name the format)."""
    path = Path(path)
    if path.suffix.lower() != ".pdb":
        raise ValueError(f"write_backbone_pdb: {path} must end in .pdb.")
    return write_backbone(atoms, path, chain_id)
