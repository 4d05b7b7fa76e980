"""Public entry points of the alpha-entmax IPA kernels: `entmax_ipa_attention` and `entmax_ipa_threshold_stats`."""

import torch
from torch import Tensor

from flashipa_kernels.entmax_ipa import launch
from flashipa_kernels.entmax_ipa.packing import dims, point_operands, sequence_centres
from flashipa_kernels.flash_ipa.attention import token_major

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class _EntmaxIPAFunction(torch.autograd.Function):
    """Token-major inputs ([T, H, ...], pair_k [T, R, C_z]) -> o, o_pts, o_pair (see launch.py)."""

    @staticmethod
    def forward(
        ctx,
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
        o, o_pts, o_pair, tau, s0, (kept, qb_range), centres = launch.forward(
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
        )
        ctx.save_for_backward(
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
            tau,
            s0,
            kept,
            qb_range,
            centres,
        )
        ctx.max_seqlen, ctx.allow_tf32 = max_seqlen, allow_tf32
        return o, o_pts, o_pair

    @staticmethod
    def backward(ctx, do, do_pts, do_pair):
        (
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
            tau,
            s0,
            kept,
            qb_range,
            centres,
        ) = ctx.saved_tensors
        T, H = q.shape[:2]
        # an output that took no part in the loss arrives as None
        do = torch.zeros(T, H, v.shape[-1], dtype=v.dtype, device=q.device) if do is None else do.contiguous()
        do_pts = (
            torch.zeros(T, H, 3 * v_pts.shape[-2], dtype=v_pts.dtype, device=q.device)
            if do_pts is None
            else do_pts.contiguous()
        )
        do_pair = (
            torch.zeros(T, H, pair_k.shape[-2] * pair_k.shape[-1], dtype=pair_k.dtype, device=q.device)
            if do_pair is None
            else do_pair.contiguous()
        )
        grads = launch.backward(
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
            ctx.max_seqlen,
            ctx.allow_tf32,
            ctx.needs_input_grad[10],
            tau,
            s0,
            (kept, qb_range),
            centres,
        )
        return (*grads, None, None, None, None)


def _check_inputs(named):
    for name, x in named.items():
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(
                f"kernels/entmax_ipa/attention.py: {name} has dtype {x.dtype}; the entmax IPA kernels take "
                "float32, bfloat16 or float16 (use the torch backend, kernels/entmax_ipa/reference_tiled.py, "
                "for float64)"
            )
        if x.device != named["q"].device:
            raise ValueError(
                f"kernels/entmax_ipa/attention.py: {name} is on {x.device} but q is on {named['q'].device}; "
                "move all inputs to one device"
            )


def _alpha_per_head(alpha, H, device):
    alpha = torch.as_tensor(alpha, device=device).to(torch.float32).expand(H).contiguous()  # [H]
    if not torch.compiler.is_compiling() and not bool(((alpha > 1.0) & (alpha <= 2.0)).all()):
        raise ValueError(f"kernels/entmax_ipa/attention.py: alpha={alpha.tolist()} must lie in (1, 2]")
    return alpha


def entmax_ipa_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_pts: Tensor,
    k_pts: Tensor,
    v_pts: Tensor,
    bias_q: Tensor,
    bias_k: Tensor,
    pair_k: Tensor,
    point_weights: Tensor,
    alpha,
    mask: Tensor | None = None,
    *,
    cu_seqlens: Tensor | None = None,
    max_seqlen: int | None = None,
    allow_tf32: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """IPA attention with alpha-entmax weights (exactly zero outside a data-dependent support), in Triton.

    The logits are those of `flashipa_kernels.flash_ipa.flash_ipa_attention` (same arguments, masks and varlen
    packing); the weights are p_ij = [(alpha_h - 1) s_ij - tau_i]_+^(1 / (alpha_h - 1)) with tau_i such
    that they sum to 1. Key blocks without a nonzero weight are skipped in the forward and backward.

    Args (beyond flash_ipa_attention's):
        alpha: [H] tensor (may require grad: d alpha comes from the dQ kernel) or a float, in (1, 2].
    Returns:
        o [B, L, H, C_v], o_pts [B, L, H, P_v, 3] (global frame), o_pair [B, L, H, R, C_z]
    """
    _check_inputs(
        dict(
            q=q,
            k=k,
            v=v,
            q_pts=q_pts,
            k_pts=k_pts,
            v_pts=v_pts,
            bias_q=bias_q,
            bias_k=bias_k,
            pair_k=pair_k,
            point_weights=point_weights,
        )
    )
    B, L, H = q.shape[:3]
    P_v = v_pts.shape[-2]
    R, C_z = pair_k.shape[-2:]
    tokens, key_mask, cu_seqlens, max_seqlen = token_major(q, mask, cu_seqlens, max_seqlen)
    o, o_pts, o_pair = _EntmaxIPAFunction.apply(
        tokens(q),
        tokens(k),
        tokens(v),
        tokens(q_pts),
        tokens(k_pts),
        tokens(v_pts),
        tokens(bias_q),
        tokens(bias_k),
        tokens(pair_k),
        point_weights.contiguous(),
        _alpha_per_head(alpha, H, q.device),
        key_mask,
        cu_seqlens,
        max_seqlen,
        allow_tf32,
    )
    return (
        o.view(B, L, H, -1),  # [B, L, H, C_v]
        o_pts.view(B, L, H, P_v, 3),  # [B, L, H, P_v, 3]
        o_pair.view(B, L, H, R, C_z),  # [B, L, H, R, C_z]
    )


@torch.no_grad()
def entmax_ipa_threshold_stats(
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
    mask=None,
    *,
    cu_seqlens=None,
    max_seqlen=None,
    allow_tf32=True,
    trace=None,
    dense_mask=False,
):
    """The threshold pass alone (inputs as `entmax_ipa_attention`), for benchmarks and reports; trace: as
    `launch.threshold`'s (diagnosis).

    Returns a dict: passes [H, T] int32 (evaluations of f per query row; 0 for padding), tau [H, T],
    kept_fraction (of all S * H * NQB * NKB blocks, float), blocks (BLOCK_M, BLOCK_N) and, with dense_mask
    (small L: O(L^2)), block_mask int8 [S * H, NQB, NKB] (1: kept, 0: skipped)."""
    H = q.shape[2]
    tokens, key_mask, cu_seqlens, max_seqlen = token_major(q, mask, cu_seqlens, max_seqlen)
    q, k, q_pts, k_pts, v_pts, bias_q, bias_k = (tokens(x) for x in (q, k, q_pts, k_pts, v_pts, bias_q, bias_k))
    d = dims(q, tokens(v), q_pts, v_pts, bias_q, tokens(pair_k))
    centres = sequence_centres(k_pts, key_mask, cu_seqlens)
    qpb, kpb, _ = point_operands(q_pts, k_pts, v_pts, bias_q, bias_k, point_weights, centres, cu_seqlens, q.dtype)
    tau, _, passes, kept_blocks = launch.threshold(
        q,
        k.to(q.dtype),
        qpb,
        kpb,
        point_weights.contiguous(),
        _alpha_per_head(alpha, H, q.device),
        key_mask,
        cu_seqlens,
        max_seqlen,
        allow_tf32,
        d,
        trace=trace,
    )
    stats = dict(passes=passes, tau=tau, kept_fraction=launch.kept_fraction(kept_blocks), blocks=launch.BLOCKS[:2])
    if dense_mask:
        stats["block_mask"] = launch.block_mask(kept_blocks)
    return stats
