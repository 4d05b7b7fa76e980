"""Factorized IPA attention (the FlashIPA formulation), PyTorch references.

AlphaFold2 Algorithm 22 computes, for every head h, query i and key j,

    logit_hij = w_L * (q_hi . k_hj / sqrt(C) + b_hij - gamma_h * w_C / 2 * sum_p |T_i q_hip - T_j k_hjp|^2)

Here the pair information arrives as per-residue factors, so no L x L tensor is ever formed:

    b_hij = sum_r bias_q[i, h, r] * bias_k[j, h, r]                 (rank-R pair bias)
    z_ij  = sum_r pair_q[i, r] * pair_k[j, r]                        (rank-R pair values)
    sum_j a_hij z_ij = sum_r pair_q[i, r] * (sum_j a_hij pair_k[j, r])

and |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, where the query-only |a|^2 is dropped (softmax is invariant to a
per-row shift) and |b|^2 becomes one more key feature. The whole logit is then one dot product of
concatenated per-residue features (`ipa_attention_features`), and the attention is one scaled
dot-product attention with scale 1 whose value vector carries scalar values, value points and the
key-side pair-value factors.

`point_weights` are per-head and already include everything in front of the point term:
softplus(gamma_h) * w_C * w_L, as OpenFold's `head_weights * sqrt(1 / (3 * (P_q * 9 / 2)))`.

The attention core here, `tiled_ipa_attention`, is tiled over queries and keys with an online softmax and
a backward that recomputes the probabilities from the saved log-sum-exp (FlashAttention's algorithm, in
PyTorch): memory O(L * tile) in forward and backward. It is the float64 reference and the model's "torch"
backend; the other backends (sdpa, the Triton kernel) and their dispatch live in `flashipa_kernels.backends`.

Masks: a key mask removes padded keys; outputs of padded queries are zero.
"""

import math

import torch

W_L = math.sqrt(1.0 / 3.0)  # AlphaFold2's weight for the three logit terms


def ipa_attention_features(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights):
    """Concatenate per-residue IPA features so that q_feat . k_feat is the IPA logit.

    Args:
        q, k:          [B, L, H, C]      scalar queries and keys
        v:             [B, L, H, C_v]    scalar values
        q_pts, k_pts:  [B, L, H, P_q, 3] query and key points in the global frame
        v_pts:         [B, L, H, P_v, 3] value points in the global frame
        bias_q, bias_k:[B, L, H, R]      pair-bias factors
        pair_k:        [B, L, R, C_z]    key-side pair-value factors (shared by all heads)
        point_weights: [H]               softplus(gamma) * w_C * w_L
    Returns:
        q_feat, k_feat: [B, L, H, C + 3 P_q + R + 1]
        v_feat:         [B, L, H, C_v + 3 P_v + R C_z]
    """
    B, L, H, C = q.shape
    pw = point_weights.to(q.dtype)[:, None]  # [H, 1]
    q_feat = torch.cat(
        [
            q * (W_L / math.sqrt(C)),
            q_pts.flatten(-2) * pw,
            bias_q * W_L,
            (-0.5 * pw).expand(B, L, H, 1),
        ],
        dim=-1,
    )
    k_feat = torch.cat([k, k_pts.flatten(-2), bias_k, k_pts.square().sum(dim=(-1, -2))[..., None]], dim=-1)
    v_feat = torch.cat([v, v_pts.flatten(-2), pair_k.flatten(-2)[:, :, None].expand(B, L, H, -1)], dim=-1)
    return q_feat, k_feat, v_feat


def split_attention_output(o_feat, v, v_pts, pair_k):
    """Split the attention output [B, L, H, C_v + 3 P_v + R C_z] into its three parts."""
    C_v, P_v = v.shape[-1], v_pts.shape[-2]
    R, C_z = pair_k.shape[-2:]
    o, o_pts, o_pair = torch.split(o_feat, [C_v, 3 * P_v, R * C_z], dim=-1)
    return (
        o,  # [B, L, H, C_v]
        o_pts.unflatten(-1, (P_v, 3)),  # [B, L, H, P_v, 3]
        o_pair.unflatten(-1, (R, C_z)),  # [B, L, H, R, C_z]
    )


def _key_bias(key_mask, dtype):
    # [B, L] additive bias: 0 for real keys, -inf for padding
    return torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device).masked_fill(~key_mask, float("-inf"))


class _TiledAttention(torch.autograd.Function):
    """softmax(q k^T + key_bias) v over [B, H, L, D] tensors, in tiles, with a FlashAttention backward."""

    @staticmethod
    def forward(ctx, q, k, v, key_bias, tile):
        B, H, L, _ = q.shape
        o = torch.zeros(B, H, L, v.shape[-1], dtype=q.dtype, device=q.device)
        lse = torch.empty(B, H, L, dtype=q.dtype, device=q.device)
        for qs in range(0, L, tile):
            qi = q[:, :, qs : qs + tile]  # [B, H, tq, D]
            m = torch.full(qi.shape[:-1], float("-inf"), dtype=q.dtype, device=q.device)
            m_safe = torch.zeros_like(m)
            denom = torch.zeros_like(m)
            acc = torch.zeros(*qi.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
            for ks in range(0, L, tile):
                s = qi @ k[:, :, ks : ks + tile].transpose(-1, -2)  # [B, H, tq, tk]
                s = s + key_bias[:, None, None, ks : ks + tile]
                m_new = torch.maximum(m, s.amax(dim=-1))
                m_new_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)
                p = torch.exp(s - m_new_safe[..., None])
                alpha = torch.exp(m_safe - m_new_safe).masked_fill(m == float("-inf"), 0.0)
                denom = denom * alpha + p.sum(dim=-1)
                acc = acc * alpha[..., None] + p @ v[:, :, ks : ks + tile]
                m, m_safe = m_new, m_new_safe
            empty = denom == 0  # a query with no real key attends to nothing
            o[:, :, qs : qs + tile] = acc / denom.masked_fill(empty, 1.0)[..., None]
            lse[:, :, qs : qs + tile] = (m_safe + torch.log(denom)).masked_fill(empty, float("inf"))
        ctx.save_for_backward(q, k, v, key_bias, o, lse)
        ctx.tile = tile
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, key_bias, o, lse = ctx.saved_tensors
        tile = ctx.tile
        L = q.shape[2]
        delta = (do * o).sum(dim=-1)  # [B, H, L]
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for qs in range(0, L, tile):
            qi, doi = q[:, :, qs : qs + tile], do[:, :, qs : qs + tile]
            lse_i, delta_i = lse[:, :, qs : qs + tile, None], delta[:, :, qs : qs + tile, None]
            for ks in range(0, L, tile):
                kj, vj = k[:, :, ks : ks + tile], v[:, :, ks : ks + tile]
                s = qi @ kj.transpose(-1, -2) + key_bias[:, None, None, ks : ks + tile]
                p = torch.exp(s - lse_i)  # [B, H, tq, tk]
                dv[:, :, ks : ks + tile] += p.transpose(-1, -2) @ doi
                ds = p * (doi @ vj.transpose(-1, -2) - delta_i)
                dq[:, :, qs : qs + tile] += ds @ kj
                dk[:, :, ks : ks + tile] += ds.transpose(-1, -2) @ qi
        return dq, dk, dv, None, None


def _attention_torch(q_feat, k_feat, v_feat, key_mask, tile):
    # [B, L, H, D] -> [B, H, L, D] views, no copies
    o = _TiledAttention.apply(
        q_feat.transpose(1, 2),
        k_feat.transpose(1, 2),
        v_feat.transpose(1, 2),
        _key_bias(key_mask, q_feat.dtype),
        tile,
    )
    return o.transpose(1, 2)  # [B, L, H, D_v]


def tiled_ipa_attention(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, mask=None, tile=256):
    """IPA attention over per-residue features (shapes as in `ipa_attention_features`), in PyTorch tiles.

    Args:
        mask: [B, L] bool, True for real residues (None: all real).
        tile: query and key tile length.
    Returns:
        o:      [B, L, H, C_v]       sum_j a_hij v_hj
        o_pts:  [B, L, H, P_v, 3]    sum_j a_hij v_pts_hj (global frame)
        o_pair: [B, L, H, R, C_z]    sum_j a_hij pair_k_jr
    """
    B, L = q.shape[:2]
    mask = torch.ones(B, L, dtype=torch.bool, device=q.device) if mask is None else mask.bool()
    feats = ipa_attention_features(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights)
    o_feat = _attention_torch(*feats, mask, tile)
    o_feat = o_feat * mask[:, :, None, None].to(o_feat.dtype)  # padded queries output zero
    return split_attention_output(o_feat, v, v_pts, pair_k)


def factorized_ipa_attention(
    q,
    k,
    v,
    q_pts,
    k_pts,
    v_pts,
    bias_q,
    bias_k,
    pair_q,
    pair_k,
    point_weights,
    mask=None,
    core=tiled_ipa_attention,
):
    """Factorized IPA attention; same outputs as `dense_ipa_attention` with the pair bias and
    pair values materialised from the factors (`pair_bias_from_factors`, `pair_values_from_factors`).

    Args:
        pair_q: [B, L, R, C_z] query-side pair-value factors; other args as in `tiled_ipa_attention`.
        core:   the attention core, any function with `tiled_ipa_attention`'s arguments (q ... point_weights,
                mask) and outputs: this reference by default, a backend of `flashipa_kernels.backends` in the model.
    Returns:
        o [B, L, H, C_v], o_pts [B, L, H, P_v, 3] (global frame), o_pair [B, L, H, C_z]
    """
    o, o_pts, o_pair_r = core(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, mask)
    o_pair = torch.einsum("birc,bihrc->bihc", pair_q.to(o_pair_r.dtype), o_pair_r)  # [B, L, H, C_z]
    return o, o_pts, o_pair


def pair_bias_from_factors(bias_q, bias_k):
    """b_hij = sum_r bias_q[i, h, r] bias_k[j, h, r]: [B, L, H, R] x2 -> [B, L, L, H] (O(L^2): tests only)."""
    return torch.einsum("bihr,bjhr->bijh", bias_q, bias_k)


def pair_values_from_factors(pair_q, pair_k):
    """z_ij = sum_r pair_q[i, r] * pair_k[j, r]: [B, L, R, C_z] x2 -> [B, L, L, C_z] (O(L^2): tests only)."""
    return torch.einsum("birc,bjrc->bijc", pair_q, pair_k)
