"""PyTorch reference of attention over per-query key lists (the function the Triton kernels compute).

Gathers every query's keys into [T, K, H, *] tensors (O(T K) memory, fine for tests and the CPU path)
and differentiates through torch autograd, in any dtype (float64 for the tests' references).
"""

import torch


def neighbour_attention_reference(qs, ks, qp, kp, pw, v, nbr):
    """softmax_j over j in nbr[i] of qs_i.ks_j - pw_h / 2 |qp_i - kp_j|^2, applied to v.

    Args:
        qs, ks: [T, H, DS] scalar+bias operands
        qp, kp: [T, H, P3] query / key points (flattened xyz)
        pw:     [H] point weights
        v:      [T, H, DV] values
        nbr:    [T, K] int token indices of each query's keys, -1 where empty
    Returns:
        o [T, H, DV] (zero for an empty list), lse [T, H] (-inf for an empty list)
    """
    valid = nbr >= 0  # [T, K]
    j = nbr.long().clamp(min=0)
    # [T, K, H, *]
    ks_j, kp_j, v_j = ks[j], kp[j], v[j]
    diff = qp[:, None] - kp_j
    s = torch.einsum("thd,tkhd->tkh", qs, ks_j) - 0.5 * pw * diff.square().sum(-1)
    s = s.masked_fill(~valid[..., None], float("-inf"))  # [T, K, H]
    lse = torch.logsumexp(s, dim=1)  # [T, H]
    empty = ~valid.any(-1)  # [T]
    p = torch.exp(s - lse.masked_fill(empty[:, None], 0.0)[:, None]).masked_fill(~valid[..., None], 0.0)
    o = torch.einsum("tkh,tkhd->thd", p, v_j.to(p.dtype))
    return o, lse
