"""Feature packing of the entmax kernels: centred point-bias and value-point operands, rounded once.

This is the softmax FlashIPA kernel's first packing (one centre per sequence, unpadded widths, float16
point operands for bfloat16 inputs); the softmax kernel has since moved to hi + lo operands of
power-of-two widths (kernels/flash_ipa/launch.py), which the entmax kernels do not read yet.
"""

import torch

from flashipa_kernels.flash_ipa.launch import W_L, tile_width
from flashipa_kernels.flash_ipa.launch import sequence_centres as _sequence_centres


def dims(q, v, q_pts, v_pts, bias_q, pair_k):
    """Feature dims and their register-tile widths, as kernel constexprs."""
    C, CV = q.shape[-1], v.shape[-1]
    P3, PV3 = 3 * q_pts.shape[-2], 3 * v_pts.shape[-2]
    RB = bias_q.shape[-1]
    RZ = pair_k.shape[-2] * pair_k.shape[-1]
    return dict(
        C=C,
        C_PAD=tile_width(C),
        CV=CV,
        CV_PAD=tile_width(CV),
        P3=P3,
        RB=RB,
        PB=P3 + RB,
        PB_PAD=tile_width(P3 + RB),
        PV3=PV3,
        PV3_PAD=tile_width(PV3),
        RZ=RZ,
        RZ_PAD=tile_width(RZ),
    )


def sequence_centres(k_pts, key_mask, cu_seqlens):
    """[S, 3] float32: the mean real key point of each sequence (see kernels/flash_ipa/launch.py)."""
    max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    return _sequence_centres(k_pts, key_mask, cu_seqlens, max_seqlen)


def point_dtype(dtype):
    """float16 for bfloat16 inputs (3 more mantissa bits for centred coordinates), else the input dtype."""
    return torch.float16 if dtype == torch.bfloat16 else dtype


def point_operands(q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, centres, cu_seqlens, dtype):
    """The kernels' point-bias and value-point operands, centred per sequence and rounded once.

    Args: token-major q_pts, k_pts [T, H, P_q, 3], v_pts [T, H, P_v, 3], bias_q, bias_k [T, H, R_b],
    point_weights [H], centres [S, 3] float32, cu_seqlens [S + 1] int32, dtype: the dot dtype.
    Returns (point dtype):
        qpb [T, H, 3 P_q + R_b]: [pw (q_pts - c), W_L bias_q]
        kpb [T, H, 3 P_q + R_b]: [k_pts - c, bias_k]
        vpc [T, H, 3 P_v]:       v_pts - c
    """
    T = q_pts.shape[0]
    tok = torch.arange(T, device=q_pts.device, dtype=torch.int32)
    seq = torch.searchsorted(cu_seqlens[1:], tok, right=True)  # [T], the sequence of each token
    c = centres[seq][:, None, None, :]  # [T, 1, 1, 3]
    pdt = point_dtype(dtype)
    pw = point_weights.float()[None, :, None]  # [1, H, 1]
    qpb = torch.cat([(q_pts.float() - c).flatten(2) * pw, bias_q.float() * W_L], -1).to(pdt)
    kpb = torch.cat([(k_pts.float() - c).flatten(2), bias_k.float()], -1).to(pdt)
    vpc = (v_pts.float() - c).flatten(2).to(pdt)
    return qpb, kpb, vpc
