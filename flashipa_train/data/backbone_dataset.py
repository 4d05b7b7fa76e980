"""Map-style dataset of preprocessed chains: loads one example, crops it and centres it at its CA mean."""

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from flashipa_train.data.example_store import load_example


class BackboneDataset(Dataset):
    """Examples listed in metadata rows of a preprocessed directory.

    Indexed by (row, crop_start, crop_length) keys that `TokenBudgetBatchSampler` produces, so all
    randomness lives in the sampler (main process) and workers hold no RNG or mutable state.

    Args:
        directory: the preprocessed directory (holds `examples/`).
        rows: its metadata.csv rows (dicts) for this split.
    """

    def __init__(self, directory: str, rows: list[dict]):
        self.directory = directory
        self.rows = rows
        self.lengths = np.array([int(row["length"]) for row in rows], dtype=np.int64)  # [N]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> dict:
        if isinstance(key, (int, np.integer)):
            index, start, length = int(key), 0, int(self.lengths[key])
        else:
            index, start, length = (int(k) for k in key)
        row = self.rows[index]
        example = load_example(os.path.join(self.directory, row["example"]))
        window = slice(start, start + length)
        atoms = torch.from_numpy(example["atoms"][window])  # [L, 4, 3]
        atom_mask = torch.from_numpy(example["atom_mask"][window])  # [L, 4]
        atoms = centre_at_ca_mean(atoms, atom_mask)
        stop = start + atoms.shape[0]
        return {
            "atoms": atoms,
            "atom_mask": atom_mask,
            "res_mask": atom_mask[:, :3].all(dim=-1),  # [L] N, CA and C modelled
            "aatype": torch.from_numpy(example["aatype"][window].astype(np.int64)),  # [L]
            # [L] contiguous from 0, as the sampler's arange(L): the model is only ever conditioned on
            # gap-free numbering (author numbering gaps, often not chain breaks, are not trained on)
            "residue_index": torch.arange(atoms.shape[0], dtype=torch.int64),
            "chain_index": torch.zeros(atoms.shape[0], dtype=torch.int64),  # [L] one chain per example
            "b_factors": torch.from_numpy(example["b_factors"][window]),  # [L, 4]
            "source": f"{row['source']} chain {row['chain']} seg {row['segment']} residues {start}-{stop - 1}",
        }


def centre_at_ca_mean(atoms: torch.Tensor, atom_mask: torch.Tensor) -> torch.Tensor:
    """Translate atoms [L, 4, 3] so the mean of modelled CA atoms is at the origin; unmodelled atoms stay 0.

    Falls back to the mean of all modelled atoms when no CA is modelled.
    """
    ca_mask = atom_mask[:, 1]  # [L]
    if ca_mask.any():
        centre = atoms[ca_mask, 1].mean(dim=0)  # [3]
    elif atom_mask.any():
        centre = atoms[atom_mask].mean(dim=0)  # [3]
    else:
        centre = atoms.new_zeros(3)
    return (atoms - centre) * atom_mask.to(atoms.dtype)[..., None]  # [L, 4, 3]
