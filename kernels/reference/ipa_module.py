"""Invariant Point Attention (AlphaFold2 Algorithm 22) as an nn.Module, dense or factorized.

Parameter names, shapes and the layouts of points and of the output concatenation follow
OpenFold's `InvariantPointAttention`, so its state dicts load with `load_state_dict(strict=True)`.

Two paths share every projection of the single representation:
  forward             the dense algorithm: pair bias linear_b(z) (or a given [*, L, L, H] bias) and
                      pair values z, through `dense_ipa_attention`. O(L^2) memory.
  forward_factorized  the pair bias and pair values arrive as rank-R per-residue factors, through
                      `factorized_ipa_attention`. O(L) memory with the reference core and the "torch" and
                      "triton" backends of `flashipa_kernels.backends`.
How factors are produced from node features is a model choice and lives outside this module.

Frames are given as raw rotation matrices and translations (global <- local), so this file needs
no rigid-body class. Outputs of padded residues are zero.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from flashipa_kernels.reference.dense_attention import dense_ipa_attention
from flashipa_kernels.reference.factorized_attention import factorized_ipa_attention, tiled_ipa_attention


def _points_from_linear(x, no_heads):
    """OpenFold's point layout: [*, L, H * P * 3] -> [*, L, H, P, 3].

    The last dim holds all x coordinates, then all y, then all z; within each, head-major.
    """
    # [*, L, H * P, 3]
    pts = torch.stack(torch.split(x, x.shape[-1] // 3, dim=-1), dim=-1)
    # [*, L, H, P, 3]
    return pts.unflatten(-2, (no_heads, -1))


def _to_global(pts, rots, trans):
    """Local points [B, L, H, P, 3] of frames rots [B, L, 3, 3], trans [B, L, 3] -> global."""
    # [B, L, H, P, 3]
    return torch.einsum("blxy,blhpy->blhpx", rots, pts) + trans[:, :, None, None]


def _to_local(pts, rots, trans):
    """Inverse of `_to_global`: R^T (x - t)."""
    # [B, L, H, P, 3]
    return torch.einsum("blyx,blhpy->blhpx", rots, pts - trans[:, :, None, None])


class InvariantPointAttention(nn.Module):
    """Implements Algorithm 22 (Invariant Point Attention) with OpenFold's parameters."""

    def __init__(self, c_s, c_z, c_hidden, no_heads, no_qk_points, no_v_points, eps=1e-8):
        """
        Args:
            c_s:          single representation channels
            c_z:          pair representation channels (dim of the pair values)
            c_hidden:     scalar query/key/value channels per head
            no_heads:     number of attention heads H
            no_qk_points: query/key points per head P_q
            no_v_points:  value points per head P_v
            eps:          added under the square root of the output point norms
        """
        super().__init__()
        self.c_s = c_s
        self.c_z = c_z
        self.c_hidden = c_hidden
        self.no_heads = no_heads
        self.no_qk_points = no_qk_points
        self.no_v_points = no_v_points
        self.eps = eps

        hc = no_heads * c_hidden
        self.linear_q = nn.Linear(c_s, hc)
        # per head: [k (c_hidden), v (c_hidden)]
        self.linear_kv = nn.Linear(c_s, 2 * hc)
        self.linear_q_points = nn.Linear(c_s, no_heads * no_qk_points * 3)
        self.linear_kv_points = nn.Linear(c_s, no_heads * (no_qk_points + no_v_points) * 3)
        self.linear_b = nn.Linear(c_z, no_heads)
        # softplus(head_weights) is gamma_h of Algorithm 22; softplus^-1(1) as in AlphaFold2.
        # The linears keep PyTorch's default initialisation (OpenFold zero-initialises linear_out).
        self.head_weights = nn.Parameter(torch.full((no_heads,), math.log(math.e - 1.0)))
        self.linear_out = nn.Linear(no_heads * (c_z + c_hidden + no_v_points * 4), c_s)

    def point_weights(self):
        """[H] softplus(gamma_h) * w_C * w_L, the weight of the squared point distances."""
        return F.softplus(self.head_weights) * math.sqrt(1.0 / (3 * (self.no_qk_points * 9.0 / 2)))

    def forward(self, s, z, rots, trans, mask=None, pair_bias=None):
        """Dense IPA.

        Args:
            s:         [*, L, c_s]       single representation
            z:         [*, L, L, c_z]    pair representation (the pair values)
            rots:      [*, L, 3, 3]      frame rotations (local -> global)
            trans:     [*, L, 3]         frame translations
            mask:      [*, L]            1/True for real residues (None: all real)
            pair_bias: [*, L, L, H]      optional bias used instead of linear_b(z)
        Returns:
            [*, L, c_s] single representation update
        """
        batch_shape, L = s.shape[:-2], s.shape[-2]
        proj = self._project(s, rots, trans, mask)
        # [B, L, L, C_z]
        z = z.reshape(-1, L, L, self.c_z)
        # [B, L, L, H]
        b = self.linear_b(z) if pair_bias is None else pair_bias.reshape(-1, L, L, self.no_heads)
        o, o_pts, o_pair = dense_ipa_attention(
            proj["q"],
            proj["k"],
            proj["v"],
            proj["q_pts"],
            proj["k_pts"],
            proj["v_pts"],
            b,
            z,
            self.point_weights(),
            proj["mask"],
        )
        return self._output(o, o_pts, o_pair, proj).reshape(*batch_shape, L, self.c_s)

    def forward_factorized(self, s, rots, trans, bias_q, bias_k, pair_q, pair_k, mask=None, core=tiled_ipa_attention):
        """IPA with pair bias b_hij = sum_r bias_q[i,h,r] bias_k[j,h,r] and pair values
        z_ij = sum_r pair_q[i,r] pair_k[j,r], never materialised.

        Args:
            s, rots, trans, mask: as in `forward`
            bias_q, bias_k: [*, L, H, R]    pair-bias factors (replace linear_b(z))
            pair_q, pair_k: [*, L, R, c_z]  pair-value factors
            core:           the attention core (see `factorized_ipa_attention`); a backend's:
                            `flashipa_kernels.backends.attention_core(backend)`
        Returns:
            [*, L, c_s] single representation update
        """
        batch_shape, L = s.shape[:-2], s.shape[-2]
        proj = self._project(s, rots, trans, mask)
        # [B, L, H, R]
        bias_q = bias_q.reshape(-1, L, *bias_q.shape[-2:])
        bias_k = bias_k.reshape(-1, L, *bias_k.shape[-2:])
        # [B, L, R, C_z]
        pair_q = pair_q.reshape(-1, L, *pair_q.shape[-2:])
        pair_k = pair_k.reshape(-1, L, *pair_k.shape[-2:])
        o, o_pts, o_pair = factorized_ipa_attention(
            proj["q"],
            proj["k"],
            proj["v"],
            proj["q_pts"],
            proj["k_pts"],
            proj["v_pts"],
            bias_q,
            bias_k,
            pair_q,
            pair_k,
            self.point_weights(),
            proj["mask"],
            core,
        )
        return self._output(o, o_pts, o_pair, proj).reshape(*batch_shape, L, self.c_s)

    def _project(self, s, rots, trans, mask):
        """Scalar and point queries, keys and values; batch dims flattened to one dim B."""
        L = s.shape[-2]
        # [B, L, c_s]
        s = s.reshape(-1, L, self.c_s)
        # [B, L, 3, 3]
        rots = rots.reshape(-1, L, 3, 3).to(s.dtype)
        # [B, L, 3]
        trans = trans.reshape(-1, L, 3).to(s.dtype)
        if mask is None:
            # [B, L]
            mask = torch.ones(s.shape[:2], dtype=torch.bool, device=s.device)
        # [B, L]
        mask = mask.reshape(-1, L).bool()

        # [B, L, H, C_hidden]
        q = self.linear_q(s).unflatten(-1, (self.no_heads, self.c_hidden))
        # [B, L, H, 2 * C_hidden]
        kv = self.linear_kv(s).unflatten(-1, (self.no_heads, 2 * self.c_hidden))
        # [B, L, H, C_hidden] each
        k, v = torch.split(kv, self.c_hidden, dim=-1)

        # [B, L, H, P_q, 3]
        q_pts = _to_global(_points_from_linear(self.linear_q_points(s), self.no_heads), rots, trans)
        # [B, L, H, P_q + P_v, 3]
        kv_pts = _to_global(_points_from_linear(self.linear_kv_points(s), self.no_heads), rots, trans)
        # [B, L, H, P_q, 3], [B, L, H, P_v, 3]
        k_pts, v_pts = torch.split(kv_pts, [self.no_qk_points, self.no_v_points], dim=-2)
        return dict(q=q, k=k, v=v, q_pts=q_pts, k_pts=k_pts, v_pts=v_pts, rots=rots, trans=trans, mask=mask)

    def _output(self, o, o_pts, o_pair, proj):
        """Attention outputs -> [B, L, c_s], in OpenFold's concatenation order."""
        # [B, L, H * C_hidden]
        o = o.flatten(-2)
        # [B, L, H, P_v, 3] in the local frames
        o_pts = _to_local(o_pts, proj["rots"], proj["trans"])
        # [B, L, H * P_v]
        o_pts_norm = torch.sqrt(o_pts.square().sum(dim=-1) + self.eps).flatten(-2)
        # [B, L, H * P_v, 3]
        o_pts = o_pts.flatten(-3, -2)
        # [B, L, H * C_z]
        o_pair = o_pair.flatten(-2)
        # [B, L, H * (C_hidden + 4 P_v + C_z)]
        feats = torch.cat((o, *torch.unbind(o_pts, dim=-1), o_pts_norm, o_pair), dim=-1)
        # [B, L, c_s]
        return self.linear_out(feats) * proj["mask"][..., None].to(feats.dtype)
