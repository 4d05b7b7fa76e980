"""Invariant Point Attention layers (AlphaFold2 Algorithm 22), one class per way of giving pair information.

`IPAProjections` holds the projections of OpenFold's `InvariantPointAttention` (linear_q, linear_kv,
linear_q_points, linear_kv_points, head_weights, linear_out; OpenFold's point layout: the projection's
last dim holds all x, then all y, then all z coordinates, head-major) and splits the algorithm into
queries, keys/values and output so that a variant can take keys from elsewhere:

  FactorizedIPA  pair bias and pair values as low-rank per-residue factors (`PairFactors`), through
                 `factorized_ipa_attention` with the backend's `attention_core`: O(L) memory. Given
                 precomputed `keys_values` it attends to those instead of its own input (InAttention).
  DenseIPA       a full pair representation z [B, L, L, c_z]: bias linear_b(z), values z, through
                 `dense_ipa_attention`: O(L^2) memory, the reference.

Frames are `Rigid`s with translations in nanometres (see flow_model.py); points are projected in the
local frames and mapped to the global frame before attention.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from flashipa_kernels.backends import attention_core
from flashipa_kernels.reference import dense_ipa_attention, factorized_ipa_attention
from flashipa_train.geometry import Rigid
from flashipa_train.geometry.precision import geometry_precision
from flashipa_train.model.pair_factors import PairFactors


def _points(x, num_heads):
    """OpenFold's point layout [*, 3 * H * P] (x..., y..., z...) -> [*, H, P, 3]."""
    return x.unflatten(-1, (3, num_heads, -1)).movedim(-3, -1)


def _points_to_global(local_pts, rigids: Rigid):
    """Local points [B, L, H, P, 3] of frames [B, L] -> global, in the frames' precision (autocast off)."""
    with geometry_precision(local_pts):
        return rigids[..., None, None].apply(local_pts.to(rigids.dtype))


class IPAProjections(nn.Module):
    """Scalar and point projections shared by the IPA variants; no pair projection.

    Args:
        c_s:           single representation channels
        c_pair:        channels of the pair values (the o_pair part of the output)
        c_hidden:      scalar query/key/value channels per head
        num_heads:     heads H
        num_qk_points: query/key points per head P_q
        num_v_points:  value points per head P_v
    """

    def __init__(self, c_s, c_pair, c_hidden, num_heads, num_qk_points, num_v_points, eps=1e-8):
        super().__init__()
        self.c_hidden = c_hidden
        self.num_heads = num_heads
        self.num_qk_points = num_qk_points
        self.num_v_points = num_v_points
        self.eps = eps
        hc = num_heads * c_hidden
        self.linear_q = nn.Linear(c_s, hc)
        self.linear_kv = nn.Linear(c_s, 2 * hc)
        self.linear_q_points = nn.Linear(c_s, num_heads * num_qk_points * 3)
        self.linear_kv_points = nn.Linear(c_s, num_heads * (num_qk_points + num_v_points) * 3)
        # softplus^-1(1): every head starts with gamma_h = 1, as in AlphaFold2
        self.head_weights = nn.Parameter(torch.full((num_heads,), math.log(math.e - 1.0)))
        self.linear_out = nn.Linear(num_heads * (c_pair + c_hidden + 4 * num_v_points), c_s)
        # zero-initialised output, as FrameFlow: every block starts as the identity on s
        nn.init.zeros_(self.linear_out.weight)
        nn.init.zeros_(self.linear_out.bias)

    def point_weights(self):
        """[H] softplus(gamma_h) * w_C * w_L, the weight of the squared point distances."""
        return F.softplus(self.head_weights) * math.sqrt(1.0 / (3 * (self.num_qk_points * 9.0 / 2)))

    def queries(self, s, rigids: Rigid):
        """s [B, L, c_s], frames [B, L] -> q [B, L, H, C], q_pts [B, L, H, P_q, 3] (global)."""
        # [B, L, H, C]
        q = self.linear_q(s).unflatten(-1, (self.num_heads, self.c_hidden))
        # [B, L, H, P_q, 3]
        q_pts = _points_to_global(_points(self.linear_q_points(s), self.num_heads), rigids)
        return q, q_pts

    def keys_values(self, s, rigids: Rigid):
        """s [B, L, c_s], frames [B, L] -> dict of k, v [B, L, H, C], k_pts [B, L, H, P_q, 3],
        v_pts [B, L, H, P_v, 3]."""
        # [B, L, H, C] each
        k, v = self.linear_kv(s).unflatten(-1, (self.num_heads, 2 * self.c_hidden)).split(self.c_hidden, dim=-1)
        # [B, L, H, P_q + P_v, 3]
        kv_pts = _points_to_global(_points(self.linear_kv_points(s), self.num_heads), rigids)
        k_pts, v_pts = kv_pts.split([self.num_qk_points, self.num_v_points], dim=-2)
        return dict(k=k, v=v, k_pts=k_pts, v_pts=v_pts)

    def output(self, o, o_pts, o_pair, rigids: Rigid, res_mask):
        """Attention outputs -> [B, L, c_s] in OpenFold's concatenation order, zero at padding.

        o [B, L, H, C], o_pts [B, L, H, P_v, 3] global, o_pair [B, L, H, c_pair].
        """
        # [B, L, H, P_v, 3] in the local frames of the queries
        with geometry_precision(o_pts):
            o_pts = rigids[..., None, None].invert_apply(o_pts.to(rigids.dtype))
        # [B, L, H * P_v]
        o_pts_norm = torch.sqrt(o_pts.square().sum(-1) + self.eps).flatten(-2)
        # [B, L, H * P_v, 3]
        o_pts = o_pts.flatten(-3, -2)
        # [B, L, H * (C + 4 P_v + c_pair)]
        feats = torch.cat([o.flatten(-2), *o_pts.unbind(-1), o_pts_norm, o_pair.flatten(-2)], dim=-1)
        # [B, L, c_s]
        return self.linear_out(feats) * res_mask[..., None].to(feats.dtype)


class FactorizedIPA(IPAProjections):
    """IPA with the pair bias and pair values given as `PairFactors` (never L x L)."""

    def forward(
        self,
        s,
        rigids: Rigid,
        factors: PairFactors,
        res_mask,
        backend="torch",
        keys_values=None,
        all_real=False,
        shared_points=None,
    ):
        """
        Args:
            s:           [B, L, c_s] single representation (queries; keys too unless keys_values is given)
            rigids:      [B, L] frames of the queries (nm)
            factors:     pair factors, pair_q/pair_k with c_pair channels
            res_mask:    [B, L] bool
            backend:     "torch", "sdpa", "triton" or "triton_fp8" (see flashipa_kernels.backends)
            keys_values: optional dict from `keys_values` computed elsewhere (InAttention)
            all_real:    the caller knows res_mask is all True: attention runs without a mask (the
                         sdpa backend would otherwise check on the host, a device sync per call)
            shared_points: optional [B, L, H, P_e, 3] global-frame points appended to both the query and
                         the key points: the point term then adds -w_h / 2 |p_i - p_j|^2 per head
        Returns:
            [B, L, c_s]
        """
        q, q_pts = self.queries(s, rigids)
        kv = self.keys_values(s, rigids) if keys_values is None else keys_values
        k_pts = kv["k_pts"]
        if shared_points is not None:
            # [B, L, H, P_q + P_e, 3]
            q_pts = torch.cat([q_pts, shared_points.to(q_pts.dtype)], dim=-2)
            k_pts = torch.cat([k_pts, shared_points.to(k_pts.dtype)], dim=-2)
        # [B, L, H, C], [B, L, H, P_v, 3], [B, L, H, c_pair]
        o, o_pts, o_pair = factorized_ipa_attention(
            q,
            kv["k"],
            kv["v"],
            q_pts,
            k_pts,
            kv["v_pts"],
            factors.bias_q,
            factors.bias_k,
            factors.pair_q,
            factors.pair_k,
            self.point_weights(),
            None if all_real else res_mask,
            attention_core(backend),
        )
        return self.output(o, o_pts, o_pair, rigids, res_mask)


class DenseIPA(IPAProjections):
    """IPA over a full pair representation z [B, L, L, c_pair] (O(L^2) memory)."""

    def __init__(self, c_s, c_pair, c_hidden, num_heads, num_qk_points, num_v_points, eps=1e-8):
        super().__init__(c_s, c_pair, c_hidden, num_heads, num_qk_points, num_v_points, eps)
        self.linear_b = nn.Linear(c_pair, num_heads)

    def forward(self, s, rigids: Rigid, z, res_mask, pair_bias=None):
        """
        Args:
            s:         [B, L, c_s]
            rigids:    [B, L] frames (nm)
            z:         [B, L, L, c_pair] pair representation (the pair values)
            res_mask:  [B, L] bool
            pair_bias: optional [B, L, L, H] bias used instead of linear_b(z)
        Returns:
            [B, L, c_s]
        """
        q, q_pts = self.queries(s, rigids)
        kv = self.keys_values(s, rigids)
        # [B, L, L, H]
        b = self.linear_b(z) if pair_bias is None else pair_bias
        o, o_pts, o_pair = dense_ipa_attention(
            q, kv["k"], kv["v"], q_pts, kv["k_pts"], kv["v_pts"], b, z, self.point_weights(), res_mask
        )
        return self.output(o, o_pts, o_pair, rigids, res_mask)
