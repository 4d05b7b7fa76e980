"""Public entry point of the FlashIPA kernel: `flash_ipa_attention`."""

import torch
from torch import Tensor

from flashipa_kernels.flash_ipa import op

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_inputs(named):
    for name, x in named.items():
        if x.dtype not in SUPPORTED_DTYPES:
            raise TypeError(
                f"kernels/flash_ipa/attention.py: {name} has dtype {x.dtype}; the FlashIPA kernel takes "
                "float32, bfloat16 or float16 (use flashipa_kernels.reference.tiled_ipa_attention for float64)"
            )
        if x.device != named["q"].device:
            raise ValueError(
                f"kernels/flash_ipa/attention.py: {name} is on {x.device} but q is on {named['q'].device}; "
                "move all inputs to one device"
            )


def token_major(q, mask, cu_seqlens, max_seqlen):
    """The kernels' token-major view of [B, L, ...] inputs: (tokens, key_mask [T] uint8 or None,
    cu_seqlens [S + 1] int32, max_seqlen); `tokens(x)` flattens [B, L, ...] to [B * L, ...]. Without
    cu_seqlens every batch row is one sequence; with it, the sequences are packed along L at batch size 1."""
    B, L = q.shape[:2]
    T = B * L
    if cu_seqlens is None:
        cu_seqlens = torch.arange(0, T + 1, L, dtype=torch.int32, device=q.device)  # [B + 1]
        max_seqlen = L
    else:
        if B != 1:
            raise ValueError(
                f"IPA attention kernels: cu_seqlens given with batch size {B}; pack the sequences along L "
                "with batch size 1"
            )
        cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.int32).contiguous()
        if max_seqlen is None:
            max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    key_mask = None if mask is None else mask.reshape(T).to(torch.uint8).contiguous()  # [T]

    def tokens(x):  # [B, L, ...] -> [B * L, ...], contiguous (a view when it already is)
        return x.reshape(T, *x.shape[2:]).contiguous()

    return tokens, key_mask, cu_seqlens, max_seqlen


def flash_ipa_attention(
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
    mask: Tensor | None = None,
    *,
    cu_seqlens: Tensor | None = None,
    max_seqlen: int | None = None,
    allow_tf32: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """IPA attention over per-residue features with the fused FlashIPA Triton kernel.

    Same function as `flashipa_kernels.reference.tiled_ipa_attention` (the "triton" backend of
    `flashipa_kernels.backends`), with memory O(L) in forward and backward.

    Args:
        q, k:           [B, L, H, C]        scalar queries and keys
        v:              [B, L, H, C_v]      scalar values
        q_pts, k_pts:   [B, L, H, P_q, 3]   query and key points in the global frame
        v_pts:          [B, L, H, P_v, 3]   value points in the global frame
        bias_q, bias_k: [B, L, H, R_b]      pair-bias factors
        pair_k:         [B, L, R, C_z]      key-side pair-value factors, shared by all heads
        point_weights:  [H]                 softplus(gamma) * w_C * w_L
        mask:           [B, L] bool, True for real residues (None: all real). Padded keys are
                        ignored; padded queries, and queries without any real key, output zero.
        cu_seqlens:     [S + 1] int32 on q's device, for packed (varlen) batches: B must be 1 and
                        sequence s owns residues cu_seqlens[s] .. cu_seqlens[s + 1] - 1, with
                        cu_seqlens[0] = 0 and cu_seqlens[-1] = L. Attention stays within a sequence.
        max_seqlen:     longest sequence of a varlen batch (computed, with one device sync, if None).
        allow_tf32:     float32 inputs only: tf32 dot products (fast) if True, exact float32 if False.
    All inputs are float32, bfloat16 or float16; dot products accumulate in float32. Dot operands
    take q's dtype; each output takes the dtype of its value input (v, v_pts, pair_k).
    Returns:
        o:      [B, L, H, C_v]
        o_pts:  [B, L, H, P_v, 3]   (global frame)
        o_pair: [B, L, H, R, C_z]
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

    o, o_pts, o_pair, _, _, _ = op.attention_fwd(
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
