"""Dense IPA attention (AlphaFold2 Algorithm 22, lines 7-10), O(L^2): the exact reference.

Takes a materialised pair bias b_hij and pair values z_ij; shapes and logit weights as in
`flashipa_kernels.reference.factorized_attention`, which computes the same function without L x L tensors.
"""

import math

import torch

from flashipa_kernels.reference.factorized_attention import W_L


def dense_ipa_attention(q, k, v, q_pts, k_pts, v_pts, pair_bias, pair_values, point_weights, mask=None):
    """
    Args:
        q, k:          [B, L, H, C]
        v:             [B, L, H, C_v]
        q_pts, k_pts:  [B, L, H, P_q, 3] global frame
        v_pts:         [B, L, H, P_v, 3] global frame
        pair_bias:     [B, L, L, H]      b_hij (before the w_L weight)
        pair_values:   [B, L, L, C_z]    z_ij
        point_weights: [H]               softplus(gamma) * w_C * w_L
        mask:          [B, L] bool
    Returns:
        o [B, L, H, C_v], o_pts [B, L, H, P_v, 3] (global frame), o_pair [B, L, H, C_z]
    """
    B, L, H, C = q.shape
    if mask is None:
        mask = torch.ones(B, L, dtype=torch.bool, device=q.device)
    mask = mask.bool()
    # [B, H, L, L]
    logits = torch.einsum("bihc,bjhc->bhij", q, k) * (W_L / math.sqrt(C))
    logits = logits + W_L * pair_bias.permute(0, 3, 1, 2)
    # [B, L, L, H]: sum over points and xyz of |q_i - k_j|^2
    d2 = (q_pts[:, :, None] - k_pts[:, None]).square().sum(dim=(-1, -2))
    logits = logits - 0.5 * point_weights.to(q.dtype)[None, :, None, None] * d2.permute(0, 3, 1, 2)
    logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
    a = torch.softmax(logits, dim=-1)
    a = a.masked_fill(~mask[:, None, :, None], 0.0)  # padded queries output zero
    o = torch.einsum("bhij,bjhc->bihc", a, v)
    o_pts = torch.einsum("bhij,bjhpx->bihpx", a, v_pts)
    o_pair = torch.einsum("bhij,bijc->bihc", a, pair_values)
    return o, o_pts, o_pair
