"""A-priori bound of what spatially sparse IPA drops: the attention mass outside each key list.

For query i, head h and a key j outside i's list, with x_ip = T_i q_ip, y_jp = T_j k_jp and CA
translations a_i, b_j:

    |x_ip - y_jp| >= |a_i - b_j| - |x_ip - a_i| - |y_jp - b_j|          (triangle inequality)
    |a_i - b_j|   >= D_ic = max(rho_i, dist(a_i, CA box of j's cell c))

where rho_i (`NeighbourLists.outside_radius`) is how far every key outside the list lies. With the
cell's largest local key-point norm K_cp and the box [lo_c, hi_c] of its scalar+bias keys,

    s_ij <= ub_ic = sum_d max(qs_d lo_cd, qs_d hi_cd) - pw_h / 2 sum_p max(0, D_ic - |x_ip - a_i| - K_cp)^2

so the dropped partition function is at most U_i = sum_c n_c exp(ub_ic) and the dropped mass

    m_i = Z_out / (Z_list + Z_out) <= U_i / (Z_list + U_i)                     (Z_list = exp(lse_list))

Dropping changes the output o_i = (1 - m_i) o~_i + m_i o_out to the list-only o~_i, so

    |o_i - o~_i| = m_i |o_out - o~_i| <= m_i (max_j |v_j| + |o~_i|)

Everything is computed from per-cell summaries: O(T x cells) in query chunks, for error studies.
"""

import torch

from flashipa_kernels.spatial_ipa.far_field import box_distance, cell_summary_index

QUERY_CHUNK = 256  # queries per chunk: chunk x H x cells x P bounds in memory


def cell_bounds(ks, kp, ca, res_mask, cell_size, num_points):
    """Per-cell summaries of the bound: n [C], box_low/high [C, 3], ks_low/high [C, H, DS], key-point
    local norm maxima [C, H, P], batch [C]."""
    B, L, _ = ca.shape
    T = B * L
    cell, C, batch, mask = cell_summary_index(ca, res_mask, cell_size)
    flat_ca = ca.reshape(T, 3)
    # [T, H, P] |y_jp - b_j|
    local = (kp.view(T, kp.shape[1], num_points, 3) - flat_ca[:, None, None].to(kp.dtype)).norm(dim=-1)

    def reduce(x, how):
        x = x[mask]
        idx = cell.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
        init = float("inf") if how == "amin" else -float("inf")
        return torch.full((C, *x.shape[1:]), init, dtype=x.dtype, device=x.device).scatter_reduce(0, idx, x, how)

    n = torch.zeros(C, device=ca.device, dtype=torch.float64).index_add(
        0, cell, torch.ones_like(cell, dtype=torch.float64)
    )
    return dict(
        n=n,
        box_low=reduce(flat_ca, "amin"),
        box_high=reduce(flat_ca, "amax"),
        ks_low=reduce(ks, "amin"),
        ks_high=reduce(ks, "amax"),
        local=reduce(local, "amax"),
        batch=batch,
    )


def dropped_mass_bound(qs, qp, pw, ks, kp, ca, res_mask, outside_radius, lse_list, cell_size):
    """Upper bound [T, H] of the attention mass outside each list (see the module docstring).

    Args:
        qs, ks [T, H, DS], qp, kp [T, H, 3 P], pw [H]: kernel operands (`ipa.spatial_operands`)
        ca:             [B, L, 3] frame translations
        res_mask:       [B, L] bool
        outside_radius: [T] `NeighbourLists.outside_radius`
        lse_list:       [T, H] log-sum-exp over the lists (the kernel's second output)
        cell_size:      cell edge of the bound's summaries (units of ca)
    """
    B, L, _ = ca.shape
    T, H, _ = qs.shape
    P = qp.shape[-1] // 3
    cells = cell_bounds(ks, kp, ca, res_mask, cell_size, P)
    log_n = cells["n"].log()
    token_batch = torch.arange(B, device=ca.device).repeat_interleave(L)
    flat_ca = ca.reshape(T, 3)
    bounds = []
    for s in range(0, T, QUERY_CHUNK):
        e = min(s + QUERY_CHUNK, T)
        q = qs[s:e].double()
        # [c, H, C] largest scalar+bias logit over each cell's box
        scalar = torch.einsum("thd,chd->thc", q.clamp(min=0), cells["ks_high"].double()) + torch.einsum(
            "thd,chd->thc", q.clamp(max=0), cells["ks_low"].double()
        )
        # [c, C] CA distance every dropped key of the cell keeps at least
        dist = torch.maximum(
            box_distance(flat_ca[s:e].double(), cells["box_low"].double(), cells["box_high"].double()),
            outside_radius[s:e, None].double(),
        )
        # [c, H, P] |x_ip - a_i|
        q_local = (qp[s:e].view(e - s, H, P, 3).double() - flat_ca[s:e, None, None].double()).norm(dim=-1)
        # [c, H, C, P]
        gap = (dist[:, None, :, None] - q_local[:, :, None, :] - cells["local"].double().permute(1, 0, 2)[None]).clamp(
            min=0
        )
        ub = scalar - 0.5 * pw.double()[:, None] * gap.square().sum(-1) + log_n
        ub = ub.masked_fill((cells["batch"][None] != token_batch[s:e, None])[:, None], float("-inf"))
        log_u = torch.logsumexp(ub, dim=-1)  # [c, H]
        bounds.append(torch.sigmoid(log_u - lse_list[s:e].double()))
    return torch.cat(bounds) * res_mask.reshape(T, 1)


def output_error_bound(mass_bound, o_list, v, res_mask):
    """Bound [T, H] of |o_i - o~_i| per query and head: m_i (max_j |v_j| + |o~_i|), max over i's example."""
    B, L = res_mask.shape
    T, H, _ = v.shape
    v_norm = v.double().norm(dim=-1).masked_fill(~res_mask.reshape(T, 1), 0).view(B, L, H).amax(1)  # [B, H]
    return mass_bound * (v_norm.repeat_interleave(L, 0) + o_list.double().norm(dim=-1))
