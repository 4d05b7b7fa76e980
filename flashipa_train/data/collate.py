"""Pad a list of examples into one batch dict of tensors."""

import torch

PADDED_KEYS = ("atoms", "atom_mask", "res_mask", "aatype", "residue_index", "chain_index", "b_factors")


def pad_backbone_batch(examples: list[dict]) -> dict:
    """Stack examples of different lengths, zero-padded to the longest (masks are False on padding).

    Returns atoms [B, L, 4, 3] float32, atom_mask [B, L, 4] bool, res_mask [B, L] bool,
    aatype / residue_index / chain_index [B, L] int64, b_factors [B, L, 4] float32,
    seq_mask [B, L] bool (a residue, not padding), lengths [B] int64 and source (list of B strings).
    """
    lengths = torch.tensor([e["aatype"].shape[0] for e in examples], dtype=torch.int64)  # [B]
    longest = int(lengths.max())
    batch = {}
    for key in PADDED_KEYS:
        first = examples[0][key]
        padded = first.new_zeros((len(examples), longest, *first.shape[1:]))  # [B, L, ...]
        for i, example in enumerate(examples):
            padded[i, : example[key].shape[0]] = example[key]
        batch[key] = padded
    batch["seq_mask"] = torch.arange(longest)[None, :] < lengths[:, None]  # [B, L]
    batch["lengths"] = lengths
    batch["source"] = [e["source"] for e in examples]
    return batch
