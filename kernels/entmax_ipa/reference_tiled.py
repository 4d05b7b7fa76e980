"""Tiled alpha-entmax attention in PyTorch: memory O(L * tile), the model's CPU backend ("torch").

FlashAttention's structure with the softmax replaced by alpha-entmax (see threshold.py):

  forward   per query tile: a pass for the row maxima, then Halley-bisection passes over the key
            tiles for tau (`solve_threshold`), then one pass accumulating p @ v; saves tau and the
            normaliser S_0 per row.
  backward  per query tile: a pass for sum_j g_ij dP_ij and sum_j g_ij (g = p^(2 - alpha)), then a
            pass with dS = g (dP - sum g dP / sum g) into dq, dk, dv; per-head d alpha from row sums
            (the formula in reference_dense.py).
"""

import torch

from flashipa_kernels.entmax_ipa.threshold import HALLEY, power_sums, solve_threshold, threshold_bracket
from flashipa_kernels.reference.factorized_attention import ipa_attention_features, split_attention_output


def _logits(qi, k, key_bias, ks, tile):
    # [B, H, tq, tk]
    return qi @ k[:, :, ks : ks + tile].transpose(-1, -2) + key_bias[:, None, None, ks : ks + tile]


def tile_threshold(qi, k, key_bias, alpha, tile, method=HALLEY, tol=None, max_iter=100):
    """tau, S_0 and passes per row [B, H, tq] of the query tile qi [B, H, tq, D] over all keys.

    alpha [1, H, 1, 1]; key_bias [B, L] (0 real, -inf padding)."""
    L = k.shape[2]
    a = alpha[..., 0]  # [1, H, 1]
    z_max = torch.stack([_logits(qi, k, key_bias, ks, tile).amax(-1) for ks in range(0, L, tile)]).amax(0)
    z_max = (a - 1.0) * z_max
    count = torch.isfinite(key_bias).sum(-1)[:, None, None].expand_as(z_max)  # [B, H, tq]
    real = count > 0
    z_max = z_max.masked_fill(~real, 0.0)
    lo, hi = threshold_bracket(z_max, count, a)
    r = 1.0 / (a[..., None] - 1.0)

    def evaluate(tau):
        sums = [
            power_sums((a[..., None] - 1.0) * _logits(qi, k, key_bias, ks, tile) - tau[..., None], r)
            for ks in range(0, L, tile)
        ]
        return tuple(torch.stack(x).sum(0) for x in zip(*sums))

    if tol is None:
        tol = 1e-6 if qi.dtype == torch.float32 else 1e-12
    return solve_threshold(evaluate, lo, hi, a, method, tol, max_iter, active=real)


def _weights(s, alpha, tau, s0):
    """p = [(alpha - 1) s - tau]_+^r / S_0 and its log where p > 0 (s [B, H, tq, tk])."""
    u = (alpha - 1.0) * s - tau[..., None]
    pos = u > 0
    log_p = torch.log(torch.where(pos, u, 1.0)) / (alpha - 1.0) - torch.log(s0.clamp(min=1e-30))[..., None]
    return torch.where(pos, torch.exp(log_p), 0.0), torch.where(pos, log_p, 0.0)


class _TiledEntmaxAttention(torch.autograd.Function):
    """entmax_alpha(q k^T + key_bias) v over [B, H, L, D] tensors, tiled; alpha [H]."""

    @staticmethod
    def forward(ctx, q, k, v, key_bias, alpha, tile):
        B, H, L, _ = q.shape
        a = alpha.to(q.dtype)[None, :, None, None]  # [1, H, 1, 1]
        o = torch.zeros(B, H, L, v.shape[-1], dtype=q.dtype, device=q.device)
        tau = torch.zeros(B, H, L, dtype=q.dtype, device=q.device)
        s0 = torch.ones_like(tau)
        for qs in range(0, L, tile):
            qi = q[:, :, qs : qs + tile]
            t, z, _ = tile_threshold(qi, k, key_bias, a, tile)
            tau[:, :, qs : qs + tile], s0[:, :, qs : qs + tile] = t, z
            for ks in range(0, L, tile):
                p, _ = _weights(_logits(qi, k, key_bias, ks, tile), a, t, z)
                o[:, :, qs : qs + tile] += p @ v[:, :, ks : ks + tile]
        ctx.save_for_backward(q, k, v, key_bias, alpha, tau, s0)
        ctx.tile = tile
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, key_bias, alpha, tau, s0 = ctx.saved_tensors
        tile, L = ctx.tile, q.shape[2]
        a = alpha.to(q.dtype)[None, :, None, None]
        r = 1.0 / (a[..., 0] - 1.0)  # [1, H, 1]
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        d_alpha = torch.zeros_like(q[:, :, :, 0])  # [B, H, L] per query row
        for qs in range(0, L, tile):
            rows = slice(qs, qs + tile)
            qi, doi, t, z = q[:, :, rows], do[:, :, rows], tau[:, :, rows], s0[:, :, rows]

            def tiles():
                for ks in range(0, L, tile):
                    p, log_p = _weights(_logits(qi, k, key_bias, ks, tile), a, t, z)
                    g = torch.where(p > 0, torch.exp((2.0 - a) * log_p), 0.0)
                    yield ks, p, log_p, g, doi @ v[:, :, ks : ks + tile].transpose(-1, -2)

            g_sum, g_dp, p_dp, plogp, plogp_dp = (torch.zeros_like(t) for _ in range(5))
            for _, p, log_p, g, dp in tiles():
                g_sum += g.sum(-1)
                g_dp += (g * dp).sum(-1)
                p_dp += (p * dp).sum(-1)
                plogp += (p * log_p).sum(-1)
                plogp_dp += (p * log_p * dp).sum(-1)
            delta_g = g_dp / g_sum.clamp(min=1e-30)  # [B, H, tq]
            d_alpha[:, :, rows] = r * r * (p_dp - delta_g) - r * (plogp_dp - delta_g * plogp)
            for ks, p, _, g, dp in tiles():
                ds = g * (dp - delta_g[..., None])  # [B, H, tq, tk]
                dq[:, :, rows] += ds @ k[:, :, ks : ks + tile]
                dk[:, :, ks : ks + tile] += ds.transpose(-1, -2) @ qi
                dv[:, :, ks : ks + tile] += p.transpose(-1, -2) @ doi
        return dq, dk, dv, None, d_alpha.sum(dim=(0, 2)).to(alpha.dtype), None


def tiled_entmax_ipa_attention(
    q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, alpha, mask=None, tile=256
):
    """alpha-entmax IPA attention, tiled (shapes and returns as `dense_entmax_ipa_attention`).

    Args:
        alpha: [H] tensor (may require grad) or a float.
        mask:  [B, L] bool, True for real residues (None: all real).
        tile:  query and key tile length.
    """
    B, L, H = q.shape[:3]
    mask = torch.ones(B, L, dtype=torch.bool, device=q.device) if mask is None else mask.bool()
    q_feat, k_feat, v_feat = ipa_attention_features(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights)
    key_bias = torch.zeros(B, L, dtype=q_feat.dtype, device=q.device).masked_fill(~mask, float("-inf"))
    alpha = torch.as_tensor(alpha, dtype=q_feat.dtype, device=q.device).expand(H)
    o_feat = _TiledEntmaxAttention.apply(
        q_feat.transpose(1, 2), k_feat.transpose(1, 2), v_feat.transpose(1, 2), key_bias, alpha, tile
    ).transpose(1, 2)  # [B, L, H, D_v]
    o_feat = o_feat * mask[:, :, None, None].to(o_feat.dtype)
    return split_attention_output(o_feat, v, v_pts, pair_k)
