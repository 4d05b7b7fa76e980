"""Dense alpha-entmax IPA attention in PyTorch: the float64 reference (small L only, O(L^2) memory).

The logits are those of the softmax IPA (`ipa_attention_features`: scalar, point and low-rank bias
terms, one dot product of concatenated features); the weights are alpha-entmax instead of softmax,
with tau found by plain bisection to machine precision. The gradient is the closed form of the
entmax Jacobian (Peters et al. 2019; Correia et al. 2019 for alpha), checked by gradcheck:

    d logits:  dS_j = g_j (dP_j - sum_k g_k dP_k / sum_k g_k),  g_j = p_j^(2 - alpha)
    d alpha:   sum_j dP_j [r^2 (p_j - gh_j) - r (p_j log p_j - gh_j sum_k p_k log p_k)],
               gh_j = g_j / sum_k g_k,  r = 1 / (alpha - 1)
"""

import torch

from flashipa_kernels.entmax_ipa.threshold import threshold_bracket
from flashipa_kernels.reference.factorized_attention import ipa_attention_features, split_attention_output


class EntmaxBisect(torch.autograd.Function):
    """alpha-entmax over the last dim by bisection; -inf logits get weight 0, all -inf rows all 0."""

    @staticmethod
    def forward(ctx, s, alpha):
        # s [*, N]; alpha broadcastable to [*, 1]
        alpha = alpha.to(s.dtype)
        z = (alpha - 1.0) * s
        real = torch.isfinite(z)
        count = real.sum(-1, keepdim=True)  # [*, 1]
        z_max = z.amax(-1, keepdim=True).masked_fill(count == 0, 0.0)
        lo, hi = threshold_bracket(z_max, count, alpha)
        r = 1.0 / (alpha - 1.0)
        for _ in range(200):  # the bracket shrinks to one ulp long before
            mid = (lo + hi) / 2
            f = torch.clamp(z - mid, min=0).pow(r).sum(-1, keepdim=True) - 1.0
            lo, hi = torch.where(f >= 0, mid, lo), torch.where(f >= 0, hi, mid)
        p = torch.clamp(z - lo, min=0).pow(r)
        p = p / p.sum(-1, keepdim=True).clamp(min=torch.finfo(s.dtype).tiny)
        ctx.save_for_backward(p, alpha)
        return p

    @staticmethod
    def backward(ctx, dp):
        p, alpha = ctx.saved_tensors
        g = torch.where(p > 0, p.pow(2.0 - alpha), 0.0)
        g_sum = g.sum(-1, keepdim=True).clamp(min=torch.finfo(p.dtype).tiny)
        g_hat = g / g_sum
        delta_g = (g_hat * dp).sum(-1, keepdim=True)
        ds = g * (dp - delta_g)
        d_alpha = None
        if ctx.needs_input_grad[1]:
            r = 1.0 / (alpha - 1.0)
            p_log_p = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, 1.0)), 0.0)
            dp_dalpha = r * r * (p - g_hat) - r * (p_log_p - g_hat * p_log_p.sum(-1, keepdim=True))
            d_alpha = (dp * dp_dalpha).sum(-1, keepdim=True)
            d_alpha = d_alpha.sum_to_size(alpha.shape) if alpha.dim() else d_alpha.sum()
        return ds, d_alpha


def entmax_bisect(s, alpha):
    """alpha-entmax of s over the last dim; alpha a float or a tensor broadcastable to s[..., :1]."""
    return EntmaxBisect.apply(s, torch.as_tensor(alpha, dtype=s.dtype, device=s.device))


def dense_entmax_ipa_attention(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, alpha, mask=None):
    """alpha-entmax IPA attention over per-residue features, dense (shapes as `ipa_attention_core`).

    Args:
        alpha: [H] per-head alpha in (1, 2] (or a float).
        mask:  [B, L] bool, True for real residues (None: all real).
    Returns:
        o [B, L, H, C_v], o_pts [B, L, H, P_v, 3] (global frame), o_pair [B, L, H, R, C_z]
    """
    B, L, H = q.shape[:3]
    q_feat, k_feat, v_feat = ipa_attention_features(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights)
    # [B, H, L, L]
    s = torch.einsum("bihd,bjhd->bhij", q_feat, k_feat)
    if mask is not None:
        s = s.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    alpha = torch.as_tensor(alpha, dtype=s.dtype, device=s.device).expand(H)[None, :, None, None]
    p = entmax_bisect(s, alpha)  # [B, H, L, L]
    o_feat = torch.einsum("bhij,bjhd->bihd", p, v_feat)  # [B, L, H, D_v]
    if mask is not None:
        o_feat = o_feat * mask.bool()[:, :, None, None].to(o_feat.dtype)
    return split_attention_output(o_feat, v, v_pts, pair_k)
