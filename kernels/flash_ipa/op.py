"""FlashIPA as `torch.library` custom ops (`flashipa::attention_fwd`, `flashipa::attention_bwd`).

The forward op is differentiable through `register_autograd`, and both ops have fake (meta)
implementations, so `torch.compile(fullgraph=True)` sees one opaque node each and no graph break.
All tensors are token-major ([T, H, ...], pair_k [T, R, C_z]); `attention.py` does the reshapes.
"""

import torch
from torch import Tensor

from flashipa_kernels.flash_ipa import launch


@torch.library.custom_op("flashipa::attention_fwd", mutates_args=())
def attention_fwd(
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
    key_mask: Tensor | None,
    cu_seqlens: Tensor,
    max_seqlen: int,
    allow_tf32: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Returns o [T, H, C_v], o_pts [T, H, 3 P_v], o_pair [T, H, R C_z] and, for the backward,
    o_pts centred [T, H, 3 P_v] float32, lse [H, T] float32, sequence centres [S, 3] float32."""
    return launch.forward(
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
        key_mask,
        cu_seqlens,
        max_seqlen,
        allow_tf32,
    )


@attention_fwd.register_fake
def _attention_fwd_fake(
    q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, key_mask, cu_seqlens, max_seqlen, allow_tf32
):
    T, H = q.shape[:2]
    pv3 = 3 * v_pts.shape[-2]
    rz = pair_k.shape[-2] * pair_k.shape[-1]
    f32 = torch.float32
    return (
        v.new_empty(T, H, v.shape[-1]),
        v_pts.new_empty(T, H, pv3),
        pair_k.new_empty(T, H, rz),
        q.new_empty(T, H, pv3, dtype=f32),
        q.new_empty(H, T, dtype=f32),
        q.new_empty(cu_seqlens.shape[0] - 1, 3, dtype=f32),
    )


@torch.library.custom_op("flashipa::attention_bwd", mutates_args=())
def attention_bwd(
    do: Tensor,
    do_pts: Tensor,
    do_pair: Tensor,
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
    key_mask: Tensor | None,
    cu_seqlens: Tensor,
    max_seqlen: int,
    allow_tf32: bool,
    o: Tensor,
    o_pts_centred: Tensor,
    o_pair: Tensor,
    lse: Tensor,
    centres: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights."""
    return launch.backward(
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
        key_mask,
        cu_seqlens,
        max_seqlen,
        allow_tf32,
        o,
        o_pts_centred,
        o_pair,
        lse,
        centres,
    )


@attention_bwd.register_fake
def _attention_bwd_fake(
    do, do_pts, do_pair, q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, *rest
):
    return tuple(torch.empty_like(x) for x in (q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights))


def _setup_context(ctx, inputs, output):
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
        key_mask,
        cu_seqlens,
        max_seqlen,
        allow_tf32,
    ) = inputs
    o, _, o_pair, o_pts_c, lse, centres = output
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
        key_mask,
        cu_seqlens,
        o,
        o_pts_c,
        o_pair,
        lse,
        centres,
    )
    ctx.max_seqlen = max_seqlen
    ctx.allow_tf32 = allow_tf32


def _backward(ctx, do, do_pts, do_pair, *_unused):
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
        key_mask,
        cu_seqlens,
        o,
        o_pts_c,
        o_pair,
        lse,
        centres,
    ) = ctx.saved_tensors
    # an output that took no part in the loss arrives as None
    do = torch.zeros_like(o) if do is None else do.contiguous()
    do_pts = torch.zeros_like(o_pts_c, dtype=v_pts.dtype) if do_pts is None else do_pts.contiguous()
    do_pair = torch.zeros_like(o_pair) if do_pair is None else do_pair.contiguous()
    grads = attention_bwd(
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
        key_mask,
        cu_seqlens,
        ctx.max_seqlen,
        ctx.allow_tf32,
        o,
        o_pts_c,
        o_pair,
        lse,
        centres,
    )
    return (*grads, None, None, None, None)


attention_fwd.register_autograd(_backward, setup_context=_setup_context)
