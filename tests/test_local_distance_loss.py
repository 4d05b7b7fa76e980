"""The local distance loss against an all-pairs float64 reference: every atom pair of residues i < j with
j - i <= window, padded atoms and residues excluded; and it never builds an L x L tensor."""

import torch

from flashipa_train.flow.losses import local_distance_loss
from flashipa_train.geometry.units import ANGSTROM_TO_NM


def reference_local_distance_loss(pred_atoms, atoms_1, atom_mask, window):
    B, L = atom_mask.shape[:2]
    pred, true = pred_atoms.reshape(B, L * 4, 3), atoms_1.reshape(B, L * 4, 3)
    residue = torch.arange(L).repeat_interleave(4)  # [L * 4]
    offset = residue[None, :] - residue[:, None]  # [L * 4, L * 4]: j - i
    pairs = (offset >= 1) & (offset <= window)
    mask = atom_mask.reshape(B, L * 4).to(pred.dtype)
    pair_mask = mask[:, :, None] * mask[:, None, :] * pairs  # [B, L * 4, L * 4]
    err = (torch.cdist(pred, pred) - torch.cdist(true, true)) * ANGSTROM_TO_NM
    return (err.square() * pair_mask).sum((1, 2)) / pair_mask.sum((1, 2)).clamp(min=1)


def test_local_distance_loss_matches_all_pairs_reference():
    g = torch.Generator().manual_seed(0)
    B, L = 3, 11
    pred = torch.randn(B, L, 4, 3, generator=g, dtype=torch.float64) * 5
    true = torch.randn(B, L, 4, 3, generator=g, dtype=torch.float64) * 5
    atom_mask = torch.rand(B, L, 4, generator=g) > 0.2
    atom_mask[2, 7:] = False  # a padded tail
    for window in (1, 4, 10, 30):
        out = local_distance_loss(pred, true, atom_mask, window)
        ref = reference_local_distance_loss(pred, true, atom_mask, window)
        assert torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref) < 1e-9, (
            window
        )  # the loss adds 1e-10 under each square root


def test_local_distance_loss_of_one_residue_is_zero_and_gradients_are_finite():
    assert local_distance_loss(torch.randn(2, 1, 4, 3), torch.randn(2, 1, 4, 3), torch.ones(2, 1, 4), 4).eq(0).all()
    pred = torch.randn(1, 6, 4, 3, requires_grad=True)
    mask = torch.ones(1, 6, 4)
    mask[0, 4:] = 0
    local_distance_loss(pred, torch.randn(1, 6, 4, 3), mask, 4).sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 4:].eq(0).all()
