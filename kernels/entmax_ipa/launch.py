"""Host side of the alpha-entmax IPA kernels: block sizes, the threshold pass and the launchers.

Operands are packed exactly as for the softmax kernel (`flashipa_kernels.flash_ipa.launch`: dims, sequence
centres, centred point-bias operands); all tensors token-major ([T, H, ...], pair_k [T, R, C_z]).
"""

import math
import os

import torch
import triton

from flashipa_kernels.entmax_ipa import triton_kernels as tk
from flashipa_kernels.entmax_ipa.packing import dims, point_operands, sequence_centres
from flashipa_kernels.flash_ipa.launch import W_L, next_power_of_2

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
# One (BLOCK_M, BLOCK_N, num_warps) for all kernels of a call: the kept-block lists of the threshold pass are
# indexed by these blocks. ptxas for sm_90 (Triton 3.9, anchor dims, bf16) spills least at 64 x 32 on 8
# warps (stack bytes fwd 176, dK 208, dV 0, dQ 648, threshold 0; 64 x 64 on 4 warps: 2128, 2504, 2456,
# 2656, 56); the interpreter's default is 16 x 16. ENTMAX_IPA_BLOCK=M,N,W overrides either (benchmarks, or
# the interpreter at the GPU's tiles).
BLOCKS = tuple(int(x) for x in os.environ.get("ENTMAX_IPA_BLOCK", "16,16,1" if INTERPRETED else "64,32,8").split(","))
MAX_ITER = 30  # passes of the threshold solver; Halley needs 2-5 (docs/benchmarks/entmax.md)
TOL = 1e-6  # |sum_j p_ij - 1| at which a row has converged (then normalised exactly)
# Kept key blocks listed per query block (a power of two, at most the blocks there are): O(L) memory. A query
# block with more scans its whole range of kept blocks instead (triton_kernels.py's docstring).
KEEP_CAP = 64


def _flags(dtype, allow_tf32, key_mask):
    return dict(
        HAS_MASK=key_mask is not None,
        PRECISION="tf32" if (allow_tf32 or dtype != torch.float32) else "ieee",
        UPCAST=INTERPRETED and dtype != torch.float32,  # the interpreter's 16-bit dots (flash_ipa's note)
    )


def _check_int32_offsets(T, H, d):
    widest = max(d["C"], d["CV"], d["PB"], d["PV3"], d["RZ"])
    if T * H * widest >= 2**31:
        raise ValueError(
            f"kernels/entmax_ipa/launch.py: {T} tokens x {H} heads x {widest} features overflows the "
            "kernels' int32 offsets; split the batch into smaller token budgets"
        )


def key_block_bounds(k, kpb, cu_seqlens, nkb):
    """Per key block of each sequence (BLOCK_N keys from its start) and head, float32: the largest |k|
    [S * NKB, H] and the box of the kpb rows [S * NKB, H, 2, PB] (low, high), for the threshold pass's
    upper bounds of the logits (`triton_kernels._logit_upper_bound`). Padding keys are included (a
    looser bound, never a wrong one)."""
    T, H = k.shape[:2]
    tok = torch.arange(T, device=k.device)
    seq = torch.searchsorted(cu_seqlens[1:], tok.to(cu_seqlens.dtype), right=True)  # [T]
    block = seq * nkb + torch.div(tok - cu_seqlens[seq], BLOCKS[1], rounding_mode="floor")  # [T]
    n_blocks = (cu_seqlens.shape[0] - 1) * nkb

    def reduce(x, how):  # [T, ...] -> [S * NKB, ...]
        out = torch.zeros(n_blocks, *x.shape[1:], dtype=torch.float32, device=k.device)
        index = block.view(T, *[1] * (x.dim() - 1)).expand_as(x)
        return out.scatter_reduce_(0, index, x, how, include_self=False)

    kpb = kpb.float()
    k_norm_max = reduce(k.float().norm(dim=-1), "amax")  # [S * NKB, H]
    box = torch.stack((reduce(kpb, "amin"), reduce(kpb, "amax")), 2)  # [S * NKB, H, 2, PB]
    return k_norm_max, box


def threshold(q, k, qpb, kpb, point_weights, alpha, key_mask, cu_seqlens, max_seqlen, allow_tf32, d, trace=None):
    """The threshold pass over packed operands (`point_operands`; d: `dims`). Returns tau [H, T] (+inf
    for queries without weights), S0 [H, T], passes [H, T] int32 (evaluations of f per row) and the kept
    blocks (kept int32 [S * H, NQB, cap + 4], qb_range int32 [S * H, NKB, 2]; triton_kernels.py's
    docstring): the key blocks with a nonzero weight for some query of the query block. trace: None, or a
    float32 [MAX_ITER + 1, rows, 8] tensor that the kernel fills with the search of its first rows, row
    (sequence * H + head) * NQB * BLOCK_M + query position
    (diagnosis, `scripts/entmax_gpu_diagnose.py`)."""
    T, H = q.shape[:2]
    n_seq = cu_seqlens.shape[0] - 1
    bm, bn, warps = BLOCKS
    nqb, nkb = triton.cdiv(max_seqlen, bm), triton.cdiv(max_seqlen, bn)
    tau = torch.empty(H, T, dtype=torch.float32, device=q.device)
    s0 = torch.empty_like(tau)
    passes = torch.empty(H, T, dtype=torch.int32, device=q.device)
    cap = max(2, min(KEEP_CAP, next_power_of_2(nkb)))
    candidates = torch.empty(n_seq * H, nqb, cap, dtype=torch.int32, device=q.device)
    kept = torch.zeros(n_seq * H, nqb, cap + 4, dtype=torch.int32, device=q.device)
    qb_range = torch.zeros(n_seq * H, nkb, 2, dtype=torch.int32, device=q.device)
    qb_range[..., 0] = nqb  # (nqb, 0): no query block keeps it, until the kernel's atomics say otherwise
    k_norm_max, box = key_block_bounds(k, kpb, cu_seqlens, nkb)
    tk._entmax_threshold_kernel[(nqb, n_seq * H)](
        q,
        k,
        qpb,
        kpb,
        point_weights,
        alpha,
        key_mask if key_mask is not None else cu_seqlens,
        cu_seqlens,
        k_norm_max,
        box,
        tau,
        s0,
        passes,
        candidates,
        kept,
        qb_range,
        tau if trace is None else trace,
        H,
        T,
        nqb,
        nkb,
        W_L / math.sqrt(d["C"]),
        TOL,
        MAX_ITER=MAX_ITER,
        KEEP_CAP=cap,
        TRACE_ROWS=0 if trace is None else trace.shape[1],
        **_flags(q.dtype, allow_tf32, key_mask),
        C=d["C"],
        C_PAD=d["C_PAD"],
        P3=d["P3"],
        PB=d["PB"],
        PB_PAD=d["PB_PAD"],
        BLOCK_M=bm,
        BLOCK_N=bn,
        num_warps=warps,
    )
    return tau, s0, passes, (kept, qb_range)


def _cap(kept):
    """The list capacity of `kept` [S * H, NQB, cap + 4]: the list, then count, first, last + 1 and a pad."""
    return kept.shape[-1] - 4


def kept_fraction(kept_blocks):
    """The kept share of all S * H * NQB * NKB (query block, key block) pairs."""
    kept, qb_range = kept_blocks
    count = kept[..., _cap(kept)]  # [S * H, NQB]
    return count.sum().item() / (count.numel() * qb_range.shape[1])


def block_mask(kept_blocks):
    """The kept blocks as a dense int8 mask [S * H, NQB, NKB] (1: kept), for diagnosis and tests at small L:
    O(L^2), never on the attention path."""
    kept, qb_range = kept_blocks
    cap, nkb = _cap(kept), qb_range.shape[1]
    count, first, last = (kept[..., cap + i, None] for i in range(3))  # [S * H, NQB, 1] each
    kb = torch.arange(nkb, device=kept.device)
    slot = torch.arange(cap, device=kept.device)
    listed = ((kept[..., :cap, None] == kb) & (slot[:, None] < count[..., None])).any(-2)
    return torch.where(count > cap, (first <= kb) & (kb < last), listed).to(torch.int8)


def forward(
    q,
    k,
    v,
    q_pts,
    k_pts,
    v_pts,
    bias_q,
    bias_k,
    pair_k,
    point_weights,
    alpha,
    key_mask,
    cu_seqlens,
    max_seqlen,
    allow_tf32,
):
    """Threshold pass and forward kernel on token-major tensors.

    Returns o [T, H, CV], o_pts [T, H, PV3], o_pair [T, H, RZ] and, for the backward, tau, S0, the
    kept blocks and the sequence centres."""
    T, H = q.shape[:2]
    d = dims(q, v, q_pts, v_pts, bias_q, pair_k)
    _check_int32_offsets(T, H, d)
    k, v, pair_k = (x.to(q.dtype) for x in (k, v, pair_k))
    centres = sequence_centres(k_pts, key_mask, cu_seqlens)
    qpb, kpb, vpc = point_operands(q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, centres, cu_seqlens, q.dtype)
    tau, s0, _, kept_blocks = threshold(
        q, k, qpb, kpb, point_weights, alpha, key_mask, cu_seqlens, max_seqlen, allow_tf32, d
    )
    dev = q.device
    o = torch.empty(T, H, d["CV"], dtype=v.dtype, device=dev)
    o_pts = torch.empty(T, H, d["PV3"], dtype=v_pts.dtype, device=dev)
    o_pair = torch.empty(T, H, d["RZ"], dtype=pair_k.dtype, device=dev)
    _weighted_values(
        False,
        q,
        k,
        v,
        qpb,
        kpb,
        vpc,
        pair_k,
        point_weights,
        alpha,
        centres,
        key_mask,
        cu_seqlens,
        tau,
        s0,
        kept_blocks,
        (o, o_pts, o_pair),
        allow_tf32,
        d,
    )
    return o, o_pts, o_pair, tau, s0, kept_blocks, centres


def _weighted_values(
    g_means,
    q,
    k,
    v,
    qpb,
    kpb,
    vpc,
    pair_k,
    point_weights,
    alpha,
    centres,
    key_mask,
    cu_seqlens,
    tau,
    s0,
    kept_blocks,
    outs,
    allow_tf32,
    d,
):
    """The forward kernel: p-weighted values into outs (g_means False) or g-weighted means (True)."""
    H = q.shape[1]
    bm, bn, warps = BLOCKS
    kept, qb_range = kept_blocks
    n_sh, nqb, nkb = kept.shape[0], kept.shape[1], qb_range.shape[1]
    tk._entmax_fwd_kernel[(nqb, n_sh)](
        q,
        k,
        v,
        qpb,
        kpb,
        vpc,
        pair_k,
        point_weights,
        alpha,
        centres,
        key_mask if key_mask is not None else cu_seqlens,
        cu_seqlens,
        tau,
        s0,
        kept,
        *outs,
        H,
        q.shape[0],
        nqb,
        nkb,
        W_L / math.sqrt(d["C"]),
        G_MEANS=g_means,
        **_flags(q.dtype, allow_tf32, key_mask),
        **_kernel_dims(d),
        KEEP_CAP=_cap(kept),
        BLOCK_M=bm,
        BLOCK_N=bn,
        num_warps=warps,
    )


def _kernel_dims(d):
    return {
        key: d[key] for key in ("C", "C_PAD", "CV", "CV_PAD", "P3", "PB", "PB_PAD", "PV3", "PV3_PAD", "RZ", "RZ_PAD")
    }


def backward(
    do,
    do_pts,
    do_pair,
    q,
    k,
    v,
    q_pts,
    k_pts,
    v_pts,
    bias_q,
    bias_k,
    pair_k,
    point_weights,
    alpha,
    key_mask,
    cu_seqlens,
    max_seqlen,
    allow_tf32,
    alpha_grad,
    tau,
    s0,
    kept_blocks,
    centres,
):
    """The g-weighted value means, then dK/dV (twice) and dQ kernels; returns the gradients of the ten
    inputs and of alpha ([H] or None)."""
    T, H = q.shape[:2]
    d = dims(q, v, q_pts, v_pts, bias_q, pair_k)
    n_seq = cu_seqlens.shape[0] - 1
    dev = q.device
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dq_pts, dk_pts, dv_pts = torch.empty_like(q_pts), torch.empty_like(k_pts), torch.empty_like(v_pts)
    dbias_q, dbias_k = torch.empty_like(bias_q), torch.empty_like(bias_k)
    dpair_k_heads = torch.empty(T, H, d["RZ"], dtype=torch.float32, device=dev)  # summed over heads below
    dpw_q = torch.empty(H, T, dtype=torch.float32, device=dev)
    dalpha_q = torch.empty(H, T, dtype=torch.float32, device=dev) if alpha_grad else dpw_q
    pair_k_dtype = pair_k.dtype
    k, v, pair_k, do, do_pts, do_pair = (x.to(q.dtype) for x in (k, v, pair_k, do, do_pts, do_pair))
    qpb, kpb, vpc = point_operands(q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, centres, cu_seqlens, q.dtype)
    g_means = tuple(torch.empty(T, H, n, dtype=torch.float32, device=dev) for n in (d["CV"], d["PV3"], d["RZ"]))
    _weighted_values(
        True,
        q,
        k,
        v,
        qpb,
        kpb,
        vpc,
        pair_k,
        point_weights,
        alpha,
        centres,
        key_mask,
        cu_seqlens,
        tau,
        s0,
        kept_blocks,
        g_means,
        allow_tf32,
        d,
    )
    # Dg_i = dO_i . (sum_j g_ij V_j / sum_j g_ij), over all value features (points centred)
    delta_g = sum((dx.float() * g).sum(-1) for dx, g in zip((do, do_pts, do_pair), g_means)).t().contiguous()
    # dP's value-point part in the point dtype, from the same rounded vpc as the forward's Dg
    do_pts_p = do_pts.to(vpc.dtype)
    mask_arg = key_mask if key_mask is not None else cu_seqlens
    kept, qb_range = kept_blocks
    nqb, nkb = kept.shape[1], qb_range.shape[1]
    common = dict(**_flags(q.dtype, allow_tf32, key_mask), **_kernel_dims(d), RB=d["RB"], KEEP_CAP=_cap(kept))
    bm, bn, warps = BLOCKS
    scalar_scale = W_L / math.sqrt(d["C"])
    for compute_dk in (True, False):
        tk._entmax_bwd_dkdv_kernel[(nkb, n_seq * H)](
            q,
            k,
            v,
            qpb,
            kpb,
            vpc,
            pair_k,
            point_weights,
            alpha,
            mask_arg,
            cu_seqlens,
            tau,
            s0,
            kept,
            qb_range,
            do,
            do_pts,
            do_pts_p,
            do_pair,
            delta_g,
            dk,
            dv,
            dk_pts,
            dv_pts,
            dbias_k,
            dpair_k_heads,
            H,
            T,
            nqb,
            nkb,
            scalar_scale,
            COMPUTE_DK=compute_dk,
            **common,
            BLOCK_M=bm,
            BLOCK_N=bn,
            num_warps=warps,
        )
    tk._entmax_bwd_dq_kernel[(nqb, n_seq * H)](
        q,
        k,
        v,
        qpb,
        kpb,
        vpc,
        q_pts,
        pair_k,
        point_weights,
        alpha,
        centres,
        mask_arg,
        cu_seqlens,
        tau,
        s0,
        kept,
        do,
        do_pts_p,
        do_pair,
        delta_g,
        dq,
        dq_pts,
        dbias_q,
        dpw_q,
        dalpha_q,
        H,
        T,
        nqb,
        nkb,
        scalar_scale,
        W_L,
        ALPHA_GRAD=alpha_grad,
        **common,
        BLOCK_M=bm,
        BLOCK_N=bn,
        num_warps=warps,
    )
    dpair_k = dpair_k_heads.sum(dim=1).view(pair_k.shape).to(pair_k_dtype)
    dpw = dpw_q.sum(dim=1, dtype=torch.float64).to(point_weights.dtype)  # [H]
    dalpha = dalpha_q.sum(dim=1, dtype=torch.float64).to(alpha.dtype) if alpha_grad else None
    return dq, dk, dv, dq_pts, dk_pts, dv_pts, dbias_q, dbias_k, dpair_k, dpw, dalpha
