"""Spatially sparse IPA attention: exact over each residue's neighbour list, optionally a far field.

`spatial_ipa_attention` takes the per-residue IPA inputs of `ipa_attention_core` (same shapes, same
logit: w_L (q.k / sqrt(C) + b_ij) - pw_h / 2 sum_p |T_i q_ip - T_j k_jp|^2, same value concatenation
[v, v_pts, pair_k] as `ipa_attention_features`) and a `NeighbourLists`; it returns
`ipa_attention_core`'s outputs. Keys outside a residue's list are dropped (their mass is what
`error_bound.py` bounds) or, with a far field, seen through their cell's aggregated key.

Value points are centred on each example's mean before attention and the centre added back (exact:
the weights sum to one), so 16-bit values keep their precision in large assemblies.
"""

import math

import torch

from flashipa_kernels.reference.factorized_attention import W_L, split_attention_output
from flashipa_kernels.spatial_ipa.far_field import cell_aggregates, far_field_attention, merge
from flashipa_kernels.spatial_ipa.reference import neighbour_attention_reference


def spatial_operands(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, res_mask):
    """Kernel operands, token-major: qs, ks [T, H, C + R_b], qp, kp [T, H, 3 P_q] float32, pw [H]
    float32, vf [T, H, C_v + 3 P_v + R C_z] and the value-point centre [B, 3]."""
    B, L, H, C = q.shape
    T = B * L
    m = res_mask[:, :, None, None, None].to(v_pts.dtype)
    centre = (v_pts * m).sum((1, 2, 3)) / (m.sum((1, 2, 3)) * v_pts.shape[2] * v_pts.shape[3]).clamp(min=1)
    qs = torch.cat([q * (W_L / math.sqrt(C)), bias_q.to(q.dtype) * W_L], dim=-1).reshape(T, H, -1)
    ks = torch.cat([k, bias_k.to(k.dtype)], dim=-1).reshape(T, H, -1)
    geometry = torch.promote_types(q_pts.dtype, torch.float32)  # float32, float64 in the references
    qp = q_pts.to(geometry).flatten(-2).reshape(T, H, -1)
    kp = k_pts.to(geometry).flatten(-2).reshape(T, H, -1)
    v_pts_c = (v_pts - centre[:, None, None, None]).to(v.dtype)
    vf = torch.cat([v, v_pts_c.flatten(-2), pair_k.to(v.dtype).flatten(-2)[:, :, None].expand(B, L, H, -1)], dim=-1)
    return qs, ks, qp, kp, point_weights.to(geometry), vf.reshape(T, H, -1), centre


def spatial_ipa_attention(
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
    res_mask,
    neighbours,
    ca=None,
    backend="torch",
    far_cell_size=None,
):
    """
    Args (shapes as in `ipa_attention_core`):
        res_mask:      [B, L] bool
        neighbours:    key lists of every residue: `flashipa_train.model.cell_list.NeighbourLists` or any
                       object with index [B * L, K] int32 (-1 empty) and knn_radius [B * L] (far field)
        ca:            [B, L, 3] frame translations (the far field's cells); needed with far_cell_size
        backend:       "triton" (kernels) or "torch" (gathered reference, O(L k H D) memory)
        far_cell_size: cell edge of the far field (units of ca); None: no far field
    Returns:
        o [B, L, H, C_v], o_pts [B, L, H, P_v, 3] (global frame), o_pair [B, L, H, R, C_z]
    """
    B, L, H = q.shape[:3]
    qs, ks, qp, kp, pw, vf, centre = spatial_operands(
        q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, res_mask
    )
    if backend == "triton":
        from flashipa_kernels.spatial_ipa.attention import neighbour_attention

        o, lse = neighbour_attention(qs, ks, qp, kp, pw, vf, neighbours.index)
    elif backend == "torch":
        o, lse = neighbour_attention_reference(
            qs, ks, qp.to(qs.dtype), kp.to(qs.dtype), pw.to(qs.dtype), vf, neighbours.index
        )
    else:
        raise ValueError(f"spatial_ipa backend {backend!r}: use 'triton' or 'torch'")
    if far_cell_size is not None:
        agg = cell_aggregates(ks, kp, vf, ca, res_mask, far_cell_size)
        token_batch = torch.arange(B, device=q.device).repeat_interleave(L)
        o_far, lse_far = far_field_attention(
            qs,
            qp.to(qs.dtype),
            pw.to(qs.dtype),
            agg,
            ca.reshape(-1, 3).to(qs.dtype),
            neighbours.knn_radius.to(qs.dtype),
            token_batch,
        )
        o, lse = merge(o, lse.to(lse_far.dtype), o_far, lse_far)
    o = o.view(B, L, H, -1) * res_mask[:, :, None, None].to(o.dtype)
    o, o_pts, o_pair = split_attention_output(o.to(v.dtype), v, v_pts, pair_k)
    o_pts = (o_pts + centre[:, None, None, None].to(o_pts.dtype)) * res_mask[:, :, None, None, None].to(o_pts.dtype)
    return o, o_pts, o_pair
