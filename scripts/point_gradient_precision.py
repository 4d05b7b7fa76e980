"""Which hi/lo extras of the FlashIPA backward the point gradients need: a float64 emulation (CPU, no kernel).

    PYTHONPATH=. python scripts/point_gradient_precision.py [--length 2048]

One head on a chain: a random walk of 3.8 A steps 200 A from the origin, 8 query and 8 key points per residue
1.5 A around it, point weight 0.15, 32 scalar channels. The logits are exact for the points as the kernel's
hi + lo operands give them; the rest follows the kernels' roundings in bf16: the forward's probabilities and
output (so Delta = rowsum(dO O) is slightly off, as on the GPU), ds rounded once (hi) or split hi + lo, the
centred points hi or hi + lo. Prints the relative errors of d k_pts, d q_pts and d point_weights against the
exact gradients (the GPU tests allow 1e-2), per variant of the point-gradient dots (docs/kernel_notes.md v4).
"""

import argparse

import torch

F64 = torch.float64


def bf16(x):
    """One rounding to bfloat16 (to nearest, as the GPU), held in float64."""
    return x.to(torch.bfloat16).to(F64)


def hi_lo(x):
    return bf16(x) + bf16(x - bf16(x))


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


def chain_inputs(L, points=8, channels=32, values=64, seed=0):
    """Centred query and key points [L, 3 P] (kernel operands hi, lo), scalar q, k and v, and dO."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(L, 3, generator=g, dtype=F64)
    ca = (3.8 * steps / steps.norm(dim=1, keepdim=True)).cumsum(0)
    ca = ca - ca.mean(0) + 200.0  # [L, 3]
    q_pts = ca[:, None] + 1.5 * torch.randn(L, points, 3, generator=g, dtype=F64)  # [L, P, 3]
    k_pts = ca[:, None] + 1.5 * torch.randn(L, points, 3, generator=g, dtype=F64)
    centre = k_pts.mean(dim=(0, 1))
    q_c, k_c = (q_pts - centre).reshape(L, -1), (k_pts - centre).reshape(L, -1)  # [L, 3 P]
    q, k = (torch.randn(L, channels, generator=g, dtype=F64) for _ in range(2))
    v = torch.randn(L, values, generator=g, dtype=F64)
    d_o = bf16(torch.randn(L, values, generator=g, dtype=F64))
    return q_c, k_c, q, k, v, d_o


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--point-weight", type=float, default=0.15)
    args = parser.parse_args()
    pw = args.point_weight
    q_c, k_c, q, k, v, d_o = chain_inputs(args.length)
    qh, kh = bf16(q_c), bf16(k_c)
    ql, kl = bf16(q_c - qh), bf16(k_c - kh)
    k_seen = kh + kl  # the key points as the kernel's logits see them
    k_norm = (k_seen * k_seen).sum(1)  # [L]
    point_logit = q_c @ k_seen.T - 0.5 * k_norm[None]  # [L, L]
    s = q @ k.T / q.shape[1] ** 0.5 + pw * point_logit
    p = torch.softmax(s, dim=1)
    e = torch.exp(s - s.max(1, keepdim=True).values)
    o = bf16((bf16(e) @ bf16(v)) / e.sum(1, keepdim=True))  # the forward's output, stored in bf16
    dp = d_o @ bf16(v).T
    ds = p * (dp - (d_o * o).sum(1)[:, None])  # Delta from the forward's output
    ds_exact = p * (dp - (p * dp).sum(1, keepdim=True))
    dk_exact = pw * (ds_exact.T @ q_c - k_seen * ds_exact.sum(0)[:, None])
    dq_exact = pw * (ds_exact @ k_seen)
    dpw_exact = (ds_exact * point_logit).sum()

    ds_sum_k = ds.sum(0)
    for name, acc in [
        ("hi/lo ds and ql (v2, kept)", hi_lo(ds).T @ qh + bf16(ds).T @ ql),
        ("no ds split", bf16(ds).T @ (qh + ql)),
        ("no ql", hi_lo(ds).T @ qh),
        ("neither", bf16(ds).T @ qh),
    ]:
        print(f"dK {name:34s} d k_pts {relative(pw * (acc - k_seen * ds_sum_k[:, None]), dk_exact):.1e}")
    e_row = ds.sum(1)  # sum_j ds_ij, 0 in exact arithmetic
    p_kp, p_kn, ds_kn = bf16(p) @ kh, p @ k_norm, ds @ k_norm
    for name, acc, recentre in [
        ("hi/lo ds, kl, re-centred (v2, kept)", hi_lo(ds) @ kh + bf16(ds) @ kl, True),
        ("no ds split", bf16(ds) @ (kh + kl), True),
        ("no kl", hi_lo(ds) @ kh, True),
        ("not re-centred", hi_lo(ds) @ kh + bf16(ds) @ kl, False),
    ]:
        dqp, kn = (acc - e_row[:, None] * p_kp, ds_kn - e_row * p_kn) if recentre else (acc, ds_kn)
        dpw = ((q_c * dqp).sum(1) - 0.5 * kn).sum()
        print(
            f"dQ {name:34s} d q_pts {relative(pw * dqp, dq_exact):.1e} "
            f"d point_weights {abs(dpw - dpw_exact).item() / abs(dpw_exact).item():.1e}"
        )


if __name__ == "__main__":
    main()
