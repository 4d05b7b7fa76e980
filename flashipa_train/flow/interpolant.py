"""Prior, interpolation and clean frames of SE(3) flow matching (FrameFlow's interpolant; t = 1 is data).

    trans_0 ~ N(0, trans_prior_std^2 I) per residue (Angstrom), centred over the real residues
    rots_0  ~ uniform on SO(3)
    trans_t = (1 - t) trans_0 + t trans_1                       (straight line)
    rots_t  = rots_0 exp(t log(rots_0^T rots_1))                (geodesic)
Padded residues hold the identity frame at the origin.
"""

import torch

from flashipa_train.geometry import centre, frames_from_backbone, so3_geodesic_interpolate, uniform_so3


def randn(shape, generator, device, dtype):
    """Standard normal samples drawn on the generator's device (any device when None), moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(*shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def rand(shape, generator, device, dtype):
    """Uniform [0, 1) samples drawn on the generator's device, moved to `device`."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(*shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def mask_frames(rots, trans, res_mask):
    """Identity rotations and zero translations at padded residues: rots [B, L, 3, 3], trans [B, L, 3]."""
    eye = torch.eye(3, dtype=rots.dtype, device=rots.device)
    rots = torch.where(res_mask[..., None, None], rots, eye)
    trans = trans * res_mask[..., None].to(trans.dtype)
    return rots, trans


def clean_frames(atoms, res_mask):
    """Frames of the data: atoms [B, L, 4, 3] (N, CA, C, O), Angstrom -> rots_1 [B, L, 3, 3], trans_1 [B, L, 3].

    Translations are the CA positions re-centred over the real residues (so a globally translated
    input gives the same frames up to that translation being removed).
    """
    frames = frames_from_backbone(atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :])
    trans, _ = centre(frames.trans, res_mask)
    return mask_frames(frames.rots, trans, res_mask)


def sample_prior(res_mask, trans_prior_std, generator=None, dtype=torch.float32):
    """Noise frames: rots_0 [B, L, 3, 3] uniform on SO(3), trans_0 [B, L, 3] centred Gaussian (Angstrom)."""
    B, L = res_mask.shape
    device = res_mask.device
    trans = randn((B, L, 3), generator, device, dtype) * trans_prior_std
    trans, _ = centre(trans * res_mask[..., None].to(dtype), res_mask)
    gen_device = generator.device if generator is not None else device
    rots = uniform_so3((B, L), dtype=dtype, device=gen_device, generator=generator).to(device)
    return mask_frames(rots, trans, res_mask)


def interpolate(rots_0, trans_0, rots_1, trans_1, t, res_mask):
    """Frames at time t [B] between noise (t = 0) and data (t = 1): rots_t [B, L, 3, 3], trans_t [B, L, 3]."""
    t_res = t[:, None].to(trans_0.dtype)  # [B, 1]
    trans_t = (1 - t_res[..., None]) * trans_0 + t_res[..., None] * trans_1
    rots_t = so3_geodesic_interpolate(rots_0, rots_1, t_res.expand(res_mask.shape))
    return mask_frames(rots_t, trans_t, res_mask)
