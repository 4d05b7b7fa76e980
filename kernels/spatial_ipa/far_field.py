"""Far field of spatially sparse IPA: each coarse cell of keys summarised by one aggregated key.

Keys are hashed into cubic cells of edge `cell_size` (`grid.cell_coordinates`). For every
(cell c, head h) the far field keeps n_c, the mean scalar+bias key ks_c, the mean key points kp_c, their
spread var_c = mean_j |kp_j - kp_c|^2 and the mean value v_c. A query i sees cell c as one key with

    s_ic = qs_i . ks_c - pw_h / 2 (|qp_i - kp_c|^2 + var_c) + log n_c

which is log(n_c) + the mean over the cell of the exact logits: by Jensen's inequality n_c exp(mean)
<= sum_j exp(s_ij), so the far field never overstates a cell's weight. Only cells that lie entirely
beyond the query's kNN radius (box distance of the cell's CA box > knn_radius_i) are seen, so no key of
the kNN part is counted twice (a sequence-window key in a far cell is: the window is short, rarely
far). Cost O(T x cells x H x D) in query chunks: a far field for moderate lengths and for error
studies, not the O(L) path.
"""

import torch

from flashipa_kernels.spatial_ipa.grid import cell_coordinates, cell_keys

QUERY_CHUNK = 2048


def cell_summary_index(ca, res_mask, cell_size):
    """Cells of the real tokens: cell [T_real] in 0 .. C - 1, C, batch [C] of every cell, mask [T]."""
    B, L, _ = ca.shape
    cells, G = cell_coordinates(ca, res_mask, cell_size)
    batch = torch.arange(B, device=ca.device)[:, None].expand(B, L)
    keys = cell_keys(batch, cells, G).reshape(B * L)
    mask = res_mask.reshape(B * L)
    uniq, cell = torch.unique(keys[mask], return_inverse=True)
    return cell, uniq.shape[0], uniq // (G**3), mask


def cell_aggregates(ks, kp, v, ca, res_mask, cell_size):
    """Per-cell means: dict of n [C], ks [C, H, DS], kp [C, H, P3], var [C, H], v [C, H, DV], box_low,
    box_high [C, 3] (CA box), batch [C]."""
    B, L, _ = ca.shape
    T = B * L
    cell, C, batch, mask = cell_summary_index(ca, res_mask, cell_size)
    tok = torch.full((T,), -1, dtype=torch.long, device=ca.device)
    tok[mask] = cell

    def mean(x):  # [T, ...] real tokens -> [C, ...]
        x = x[mask]
        total = torch.zeros(C, *x.shape[1:], dtype=x.dtype, device=x.device).index_add(0, cell, x)
        return total / n.view(C, *([1] * (x.dim() - 1))).to(x.dtype)

    n = torch.zeros(C, device=ca.device).index_add(0, cell, torch.ones_like(cell, dtype=torch.float32))
    kp_c = mean(kp)
    var = mean((kp - kp_c.index_select(0, tok.clamp(min=0))).square().sum(-1))
    flat_ca = ca.reshape(T, 3)[mask]
    index = cell[:, None].expand(-1, 3)
    box_low = torch.full((C, 3), float("inf"), dtype=ca.dtype, device=ca.device).scatter_reduce(
        0, index, flat_ca, "amin"
    )
    box_high = torch.full((C, 3), -float("inf"), dtype=ca.dtype, device=ca.device).scatter_reduce(
        0, index, flat_ca, "amax"
    )
    return dict(n=n, ks=mean(ks), kp=kp_c, var=var, v=mean(v), box_low=box_low, box_high=box_high, batch=batch)


def box_distance(x, low, high):
    """Distance [c, C] of points x [c, 3] to boxes [C, 3]."""
    gap = (low[None] - x[:, None]).clamp(min=0) + (x[:, None] - high[None]).clamp(min=0)
    return gap.norm(dim=-1)


def far_field_attention(qs, qp, pw, agg, ca, knn_radius, token_batch):
    """Attention of every query over the aggregated keys of its far cells.

    Args:
        qs [T, H, DS], qp [T, H, P3], pw [H]: query operands (kernel layout)
        agg:         `cell_aggregates`
        ca:          [T, 3] frame translations of the queries
        knn_radius:  [T] distance of the farthest kNN key of each query
        token_batch: [T] example of every token
    Returns:
        o [T, H, DV], lse [T, H] (-inf where no cell is far)
    """
    T = qs.shape[0]
    log_n = agg["n"].log().to(qs.dtype)  # [C]
    outs, lses = [], []
    for s in range(0, T, QUERY_CHUNK):
        e = min(s + QUERY_CHUNK, T)
        # [c, H, C]
        d2 = (qp[s:e, :, None] - agg["kp"].transpose(0, 1)[None]).square().sum(-1) + agg["var"].T[None]
        logits = torch.einsum("thd,chd->thc", qs[s:e], agg["ks"].to(qs.dtype)) - 0.5 * pw[:, None] * d2 + log_n
        far = (box_distance(ca[s:e], agg["box_low"], agg["box_high"]) > knn_radius[s:e, None]) & (
            agg["batch"][None] == token_batch[s:e, None]
        )  # [c, C]
        logits = logits.masked_fill(~far[:, None], float("-inf"))
        lse = torch.logsumexp(logits, dim=-1)  # [c, H]
        p = torch.exp(logits - lse.masked_fill(torch.isinf(lse), 0.0)[..., None])
        outs.append(torch.einsum("thc,chd->thd", p, agg["v"].to(p.dtype)))
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def merge(o_near, lse_near, o_far, lse_far):
    """Softmax over the union of two disjoint key sets from each set's output and log-sum-exp."""
    lse = torch.logaddexp(lse_near, lse_far)  # [T, H]
    lse_safe = lse.masked_fill(torch.isinf(lse), 0.0)
    w_near = torch.exp(lse_near - lse_safe)[..., None]
    w_far = torch.exp(lse_far - lse_safe)[..., None]
    return w_near * o_near.to(w_near.dtype) + w_far * o_far.to(w_far.dtype), lse
