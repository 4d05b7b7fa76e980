"""Attention over per-query key lists with the Triton kernels: launches, autograd, public function.

`neighbour_attention(...)` computes the same function as `reference.neighbour_attention_reference`
with memory O(T K) only in the int32 key lists: the kernels gather keys by index and never build
[T, K, H, D] tensors. Gradients flow to every operand through the kept pairs exactly, and to the
log-sum-exp as well (so that a far field can be merged with the near field by logaddexp).
"""

import torch

from flashipa_kernels.flash_ipa.launch import tile_width
from flashipa_kernels.spatial_ipa.triton_kernels import _bwd_kernel, _fwd_kernel

BLOCK_K = 16  # key-list entries gathered per step
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _launch_forward(qs, ks, qp, kp, pw, v, nbr):
    T, H, DS = qs.shape
    P3, DV, K = qp.shape[-1], v.shape[-1], nbr.shape[-1]
    o = torch.empty(T, H, DV, dtype=v.dtype, device=v.device)
    lse = torch.empty(T, H, dtype=torch.float32, device=v.device)
    _fwd_kernel[(T, H)](
        qs,
        ks,
        qp,
        kp,
        pw,
        v,
        nbr,
        o,
        lse,
        K,
        H,
        DS,
        P3,
        DV,
        BLOCK_K=BLOCK_K,
        DS_PAD=tile_width(DS),
        P3_PAD=tile_width(P3),
        DV_PAD=tile_width(DV),
    )
    return o, lse


def _launch_backward(qs, ks, qp, kp, pw, v, nbr, lse, delta, do):
    T, H, DS = qs.shape
    P3, DV, K = qp.shape[-1], v.shape[-1], nbr.shape[-1]
    f32 = dict(dtype=torch.float32, device=v.device)
    dqs, dqp = torch.empty(T, H, DS, **f32), torch.empty(T, H, P3, **f32)
    dks, dkp, dv = torch.zeros(T, H, DS, **f32), torch.zeros(T, H, P3, **f32), torch.zeros(T, H, DV, **f32)
    dpw = torch.empty(T, H, **f32)
    _bwd_kernel[(T, H)](
        qs,
        ks,
        qp,
        kp,
        pw,
        v,
        nbr,
        lse,
        delta,
        do,
        dqs,
        dks,
        dqp,
        dkp,
        dpw,
        dv,
        K,
        H,
        DS,
        P3,
        DV,
        BLOCK_K=BLOCK_K,
        DS_PAD=tile_width(DS),
        P3_PAD=tile_width(P3),
        DV_PAD=tile_width(DV),
    )
    return dqs, dks, dqp, dkp, dpw.sum(0), dv


class _NeighbourAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qs, ks, qp, kp, pw, v, nbr):
        o, lse = _launch_forward(qs, ks, qp, kp, pw, v, nbr)
        ctx.save_for_backward(qs, ks, qp, kp, pw, v, nbr, o, lse)
        return o, lse

    @staticmethod
    def backward(ctx, do, dlse):
        qs, ks, qp, kp, pw, v, nbr, o, lse = ctx.saved_tensors
        do = torch.zeros_like(o) if do is None else do.contiguous()
        # [T, H] ds_ij = p_ij (do_i . v_j - do_i . o_i + dlse_i)
        delta = (do.float() * o.float()).sum(-1)
        if dlse is not None:
            delta = delta - dlse.float().masked_fill(torch.isinf(lse), 0.0)
        dqs, dks, dqp, dkp, dpw, dv = _launch_backward(qs, ks, qp, kp, pw, v, nbr, lse, delta.contiguous(), do)
        return (
            dqs.to(qs.dtype),
            dks.to(ks.dtype),
            dqp.to(qp.dtype),
            dkp.to(kp.dtype),
            dpw.to(pw.dtype),
            dv.to(v.dtype),
            None,
        )


def neighbour_attention(qs, ks, qp, kp, pw, v, nbr):
    """Triton attention of every query over its key list; arguments and returns as in
    `reference.neighbour_attention_reference` (lse float32). qs, ks, v: float32, bfloat16 or float16
    (logits and accumulation in float32); qp, kp, pw: float32."""
    for name, x in dict(qs=qs, ks=ks, v=v, qp=qp, kp=kp, pw=pw).items():
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(
                f"kernels/spatial_ipa/attention.py: {name} has dtype {x.dtype}; the kernel takes "
                "float32, bfloat16 or float16 (use the torch backend for float64)"
            )
    if nbr.dtype != torch.int32:
        raise TypeError(f"kernels/spatial_ipa/attention.py: nbr has dtype {nbr.dtype}; pass int32 token indices")
    c = [x.contiguous() for x in (qs, ks, qp, kp, pw, v, nbr)]
    return _NeighbourAttention.apply(*c)
