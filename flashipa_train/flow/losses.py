"""Losses of SE(3) flow matching (FrameFlow's formulation), each masked and normalised per residue -> [B].

With the denoiser predicting clean frames, the vector fields at time t are
    translation  (trans_1 - trans_t) / (1 - t),     rotation  log(rots_t^T rots_1) / (1 - t),
so the vector-field errors are the clean-frame errors divided by (1 - t); as FrameFlow, 1 - t is
clamped at 0.1 so that late times do not blow up. Lengths are measured in nanometres (x 0.1) so all
terms are O(1).
"""

import torch

from flashipa_train.geometry import rotmat_mul, so3_log
from flashipa_train.geometry.units import ANGSTROM_TO_NM

MIN_TIME_NORMALISER = 0.1  # 1 - t never below this in the vector-field losses


def _time_normaliser(t):
    """[B] -> [B, 1, 1]: 1 - min(t, 1 - MIN_TIME_NORMALISER)."""
    return (1 - t.clamp(max=1 - MIN_TIME_NORMALISER))[:, None, None]


def _per_residue_mean(sq_err, res_mask):
    """sq_err [B, L, 3] summed over xyz, averaged over real residues and xyz -> [B]."""
    mask = res_mask.to(sq_err.dtype)
    return (sq_err.sum(-1) * mask).sum(-1) / (3 * mask.sum(-1).clamp(min=1))


def translation_vf_loss(pred_trans, trans_1, t, res_mask):
    """Translation vector-field loss [B]; pred_trans, trans_1 [B, L, 3] Angstrom, t [B], res_mask [B, L]."""
    err = (trans_1 - pred_trans) * ANGSTROM_TO_NM / _time_normaliser(t)  # [B, L, 3]
    return _per_residue_mean(err.square(), res_mask)


def rotation_vf_loss(pred_rots, rots_1, rots_t, t, res_mask):
    """Rotation vector-field loss [B]: |log(R_t^T R_1) - log(R_t^T R_pred)|^2 / (1 - t)^2; rots [B, L, 3, 3]."""
    rots_t_inv = rots_t.transpose(-1, -2)
    # [2, B, L, 3]: both logarithms in one call (half the small kernels of two)
    target_vf, pred_vf = so3_log(rotmat_mul(rots_t_inv, torch.stack([rots_1, pred_rots])))
    err = (target_vf - pred_vf) / _time_normaliser(t)
    return _per_residue_mean(err.square(), res_mask)


def backbone_atom_loss(pred_atoms, atoms_1, atom_mask):
    """Mean squared error [B] of backbone atoms [B, L, 4, 3] (nm^2) over present atoms (atom_mask [B, L, 4])."""
    sq = ((pred_atoms - atoms_1) * ANGSTROM_TO_NM).square().sum(-1)  # [B, L, 4]
    mask = atom_mask.to(sq.dtype)
    return (sq * mask).sum((-1, -2)) / (3 * mask.sum((-1, -2)).clamp(min=1))


def local_distance_loss(pred_atoms, atoms_1, atom_mask, window):
    """Squared error [B] of all backbone atom-atom distances between residues i and i + o, 1 <= o <= window.

    O(L * window) memory: residue i meets the window residues after it ([B, L, window, 4, 4], never L x L).
    Distances in nm; averaged over the present atom pairs.
    """
    B, L = pred_atoms.shape[:2]
    window = min(window, L - 1)
    if window < 1:
        return pred_atoms.new_zeros(B)
    with torch.no_grad():  # the data's distances: nothing of them is kept for the backward
        true = _local_distances(atoms_1.to(pred_atoms.dtype), window)
    err = (_local_distances(pred_atoms, window) - true) * ANGSTROM_TO_NM  # [B, L, window, 4, 4]
    mask = atom_mask.to(pred_atoms.dtype)  # [B, L, 4]
    following_mask = _following(mask, window, dim=1).movedim(-1, 2)  # [B, L, window, 4]
    pair_mask = mask[:, :, None, :, None] * following_mask[:, :, :, None, :]  # [B, L, window, 4, 4]
    dims = (1, 2, 3, 4)
    return (err.square() * pair_mask).sum(dims) / pair_mask.sum(dims).clamp(min=1)


def _local_distances(atoms, window):
    """atoms [B, L, 4, 3] -> [B, L, window, 4, 4]: distances from residue i's atoms to those of i + o
    (o = 1 .. window; to zeros past the end, masked by the caller)."""
    following = _following(atoms, window, dim=1).movedim(-1, 2)  # [B, L, window, 4, 3]
    diff = atoms[:, :, None, :, None, :] - following[:, :, :, None, :, :]  # [B, L, window, 4, 4, 3]
    return torch.sqrt(diff.square().sum(-1) + 1e-10)


def _following(x, window, dim):
    """x [..., L (at dim), ...] -> [..., L, ..., window]: entry o - 1 of the last dim holds position i + o
    (zero past the end)."""
    pad = [0, 0] * (x.dim() - 1 - dim) + [0, window]
    return torch.nn.functional.pad(x, pad).unfold(dim, window + 1, 1)[..., 1:]
