"""The alpha-entmax threshold tau of one row of logits, by Halley's method safeguarded by bisection.

alpha-entmax (1 < alpha <= 2) of logits s_j is p_j = [z_j - tau]_+^r with z_j = (alpha - 1) s_j and
r = 1 / (alpha - 1), where tau solves

    f(tau) = sum_j [z_j - tau]_+^r - 1 = 0.

f is decreasing and convex, and with m = max_j z_j and n real keys the root lies in the bracket

    [m - 1, m - n^-(alpha - 1)]   (at m - 1 the top key alone gives 1; at the right end every term is <= 1 / n).

Each evaluation of f is one pass over all keys of the row (in the kernels: a recomputation of the
logits tile by tile), so the number of passes is what costs. Bisection halves the bracket per pass;
Halley's step tau - 2 f f' / (2 f'^2 - f f''), with

    f' = -r S_1,  f'' = r (r - 1) S_2,  S_k = sum_j [z_j - tau]_+^(r - k),

converges cubically near the root. A Halley step that leaves the bracket (kept up to date from the
sign of f) is replaced by the bisection midpoint, so the method never does worse than bisection.

`solve_threshold` is the PyTorch version, vectorised over rows; the Triton threshold pass
(`triton_kernels._entmax_threshold_kernel`) runs the same iteration per block of query rows.
"""

import torch

HALLEY = "halley"
BISECT = "bisect"


def threshold_bracket(z_max, count, alpha):
    """[*] row maxima of z, [*] real keys per row, alpha broadcastable -> (lo, hi) with f(lo) >= 0 >= f(hi)."""
    n = count.to(z_max.dtype).clamp(min=1.0)
    return z_max - 1.0, z_max - n.pow(-(alpha - 1.0))


def power_sums(u, r):
    """Sums over the last dim of u_+^r, u_+^(r-1), u_+^(r-2) for u = z - tau ([*, N], r broadcastable).

    u_+^(r - 2) is bounded at u -> 0 by flooring u at 1e-18 (it only enters f'', whose weight r (r - 1)
    vanishes at alpha = 2, and a too large f'' only sends a step to the bisection safeguard)."""
    pos = u > 0
    log_u = torch.log(torch.where(pos, u, 1.0).clamp(min=1e-18))
    r = torch.as_tensor(r, dtype=u.dtype, device=u.device)

    def psum(e):
        return torch.where(pos, torch.exp(e * log_u), 0.0).sum(-1)

    return psum(r), psum(r - 1.0), psum(r - 2.0)


def solve_threshold(evaluate, lo, hi, alpha, method=HALLEY, tol=1e-6, max_iter=100, active=None):
    """tau per row such that sum_j [z_j - tau]_+^r = 1 (to `tol`).

    Args:
        evaluate: tau [*] -> (S_0, S_1, S_2) [*] each, the power sums of `power_sums` over all keys
                  of each row (one pass over the keys).
        lo, hi:   [*] the bracket of `threshold_bracket`.
        alpha:    broadcastable to [*].
        method:   "halley" (Halley steps from tau = lo, bisection safeguard) or "bisect" (midpoints).
        tol:      a row has converged when |f(tau)| <= tol, or its bracket (Halley: or its step) is
                  no wider than a few ulps of tau.
        active:   [*] bool, rows to solve (others, e.g. queries without a real key, get tau = lo).
    Returns:
        tau [*], S_0(tau) [*] (the normaliser: p = [z - tau]_+^r / S_0), passes [*] (evaluations of f
        until the row converged).
    """
    r = 1.0 / (alpha - 1.0)
    tau = lo.clone() if method == HALLEY else (lo + hi) / 2
    lo, hi = lo.clone(), hi.clone()
    done = torch.zeros_like(lo, dtype=torch.bool) if active is None else ~active
    passes = torch.zeros_like(lo, dtype=torch.long)
    s0 = torch.ones_like(lo)
    ulp = torch.finfo(lo.dtype).eps * 4
    tau_eval = tau
    for _ in range(max_iter):
        if bool(done.all()):
            break
        tau_eval = tau
        s0_new, s1, s2 = evaluate(tau)
        s0 = torch.where(done, s0, s0_new)
        passes = passes + (~done).long()
        f = s0_new - 1.0
        lo = torch.where(f > 0, tau, lo)
        hi = torch.where(f < 0, tau, hi)
        ulps = ulp * tau.abs().clamp(min=1.0)
        converged = (f.abs() <= tol) | (hi - lo <= ulps)
        mid = (lo + hi) / 2
        if method == HALLEY:
            df, d2f = -r * s1, r * (r - 1.0) * s2
            step = tau - 2 * f * df / (2 * df * df - f * d2f)
            inside = (step > lo) & (step < hi)  # also False for NaN
            nxt = torch.where(inside, step, mid)
            # a Halley step of a few ulps: the rounding of z dominates f, bisecting would not help
            converged = converged | ((step - tau).abs() <= ulps)
        else:
            nxt = mid
        done = done | converged
        tau = torch.where(done, tau, nxt)
    # the last evaluated tau (rows stopped by max_iter keep the one S_0 belongs to)
    return tau_eval, s0, passes
