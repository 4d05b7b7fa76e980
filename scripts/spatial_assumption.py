"""Is IPA attention spatially sparse on real proteins? (issue #20, item 1; CPU, dense L x L on purpose)

For every chain (and every multi-chain entry as one assembly) of data/ and ../shared/pdb, every trunk
block and every head of a FlowModel, this measures on the frames of the data (t = 1) and of the sampler's
early steps (t = 0.1):

  mass outside radius r   mean_i sum_j a_ij [|CA_i - CA_j| > r]
  mass outside k nearest  mean_i sum_j a_ij [j not among the k nearest CA of i (self included)]
  ... outside kNN u window the same, with the sequence window |i - j| <= 8 (same chain) kept as well
  point-kernel mass       sum_ij exp(-w_h/2 sum_p |T_i q_ip - T_j k_jp|^2)  (the Gaussian kernel alone)

for the attention of the full logit and of the point term alone, with the scalar term only and with the
pair bias only, so that one sees what each term does to the locality.

    PYTHONPATH=$PWD nice python scripts/spatial_assumption.py --ckpt /path/to/last.ckpt

writes docs/benchmarks/spatial_assumption.json and docs/figures/spatial_*.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spatial_chains as sc  # noqa: E402

from flashipa_kernels.reference.factorized_attention import W_L  # noqa: E402

RADII = [6, 8, 10, 12, 15, 20, 25, 30, 40, 60]  # Angstrom
KS = [8, 16, 32, 64, 128, 256]
WINDOW = 8
TERMS = ("full", "point", "point+scalar", "point+bias")


def logit_terms(rec: sc.BlockInputs):
    """Dense per-head logit terms [H, L, L] (the FlashIPA logit split into its three parts)."""
    q, k = rec.q[0].double(), rec.kv["k"][0].double()  # [L, H, C]
    C = q.shape[-1]
    scalar = torch.einsum("ihc,jhc->hij", q, k) * (W_L / math.sqrt(C))
    bias = torch.einsum("ihr,jhr->hij", rec.bias_q[0].double(), rec.bias_k[0].double()) * W_L
    x, y = rec.q_pts[0].double(), rec.kv["k_pts"][0].double()  # [L, H, P, 3]
    d2 = (
        x.square().sum((-1, -2)).T[:, :, None]
        + y.square().sum((-1, -2)).T[:, None, :]
        - 2 * torch.einsum("ihpx,jhpx->hij", x, y)
    ).clamp(min=0)
    point = -0.5 * rec.point_weights.double()[:, None, None] * d2
    return scalar, bias, point


def masses(logits, dist, rank, window_keep):
    """Mean over queries (and 95th percentile) of the attention mass outside r, outside k nearest and
    outside kNN u window, per head: dict of [H, len(RADII)] / [H, len(KS)] lists."""
    a = torch.softmax(logits, dim=-1)  # [H, L, L]
    out = {}
    out["outside_r"] = [[a[h].mul(dist > r).sum(-1) for r in RADII] for h in range(a.shape[0])]
    out["outside_k"] = [[a[h].mul(rank >= k).sum(-1) for k in KS] for h in range(a.shape[0])]
    out["outside_k_window"] = [[a[h].mul((rank >= k) & ~window_keep).sum(-1) for k in KS] for h in range(a.shape[0])]
    summary = {}
    for key, per_head in out.items():
        summary[key + "_mean"] = [[float(m.mean()) for m in row] for row in per_head]
        summary[key + "_p95"] = [[float(m.quantile(0.95)) for m in row] for row in per_head]
    return summary


def study_chain(model, chain: sc.Chain, t: float, seed=0):
    gen = torch.Generator().manual_seed(seed)
    records = sc.capture_block_inputs(model, sc.model_inputs(chain, t, gen))
    rows = []
    for rec in records:
        ca = rec.ca[0].double() * 10.0  # [L, 3] Angstrom (the block's current frames)
        dist = torch.cdist(ca, ca)  # [L, L]
        rank = dist.argsort(-1).argsort(-1)  # [L, L] 0 = itself
        ri, ch = chain.residue_index, chain.chain_index
        window_keep = ((ri[:, None] - ri[None]).abs() <= WINDOW) & (ch[:, None] == ch[None])
        scalar, bias, point = logit_terms(rec)
        row = {
            "chain": chain.name,
            "L": chain.length,
            "t": t,
            "block": rec.block,
            "kernel_mass": [float(m) for m in point.exp().sum((-1, -2))],
            "point_weights": [float(w) for w in rec.point_weights],
        }
        for term, logits in zip(TERMS, (scalar + bias + point, point, point + scalar, point + bias)):
            row[term] = masses(logits, dist, rank, window_keep)
        rows.append(row)
    return rows


def run(models, chains, ts, max_length):
    rows = []
    for model_name, model in models.items():
        for t in ts:
            for chain in chains:
                if chain.length > max_length:
                    continue
                t0 = time.perf_counter()
                for row in study_chain(model, chain, t):
                    rows.append({"model": model_name, **row})
                print(f"{model_name} t={t} {chain.name} L={chain.length}: {time.perf_counter() - t0:.1f} s", flush=True)
    return rows


# ------------------------------------------------------------------ plots


def _median(rows, term, key):
    return np.median(np.array([r[term][key] for r in rows]), axis=0)  # [H, n]


def plot(rows, out_dir, synthetic=()):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    data_rows = [r for r in rows if r["t"] == 1.0]

    # mass outside r and outside k (full logit vs point term), block 0 and last block, median over chains
    for key, xs, xlabel, fname in (
        ("outside_r_mean", RADII, "radius r (Angstrom)", "spatial_mass_vs_radius.png"),
        ("outside_k_window_mean", KS, "k nearest (+ window |i-j|<=8)", "spatial_mass_vs_k.png"),
    ):
        fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.2 * len(models)), squeeze=False)
        for mi, m in enumerate(models):
            mrows = [r for r in data_rows if r["model"] == m]
            blocks = sorted({r["block"] for r in mrows})
            for ti, term in enumerate(("full", "point")):
                ax = axes[mi, ti]
                for b, ls in ((blocks[0], "-"), (blocks[-1], "--")):
                    med = _median([r for r in mrows if r["block"] == b], term, key)
                    for h in range(med.shape[0]):
                        ax.plot(
                            xs,
                            np.maximum(med[h], 1e-8),
                            ls,
                            color=f"C{h}",
                            label=f"block {b} head {h}" if ti == 0 else None,
                        )
                ax.set_yscale("log")
                ax.set_xscale("log" if key.startswith("outside_k") else "linear")
                ax.set_title(f"{m}: {term} logit", fontsize=9)
                ax.set_xlabel(xlabel)
                ax.set_ylabel("attention mass outside (median chain)")
                ax.grid(alpha=0.3)
            axes[mi, 0].legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, fname), dpi=120)
        plt.close(fig)

    # point-kernel mass vs L
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False)
    for mi, m in enumerate(models):
        ax = axes[0, mi]
        mrows = [r for r in data_rows if r["model"] == m and r["block"] == 0]
        L = np.array([r["L"] for r in mrows])
        km = np.array([r["kernel_mass"] for r in mrows])  # [n, H]
        for h in range(km.shape[1]):
            ax.loglog(L, km[:, h], ".", color=f"C{h}", label=f"head {h}")
            slope = np.polyfit(np.log(L), np.log(km[:, h]), 1)[0]
            ax.text(
                0.02, 0.95 - 0.07 * h, f"head {h}: slope {slope:.2f}", transform=ax.transAxes, fontsize=7, color=f"C{h}"
            )
        if synthetic and m.startswith("random (anchor"):
            sL = np.array([r["L"] for r in synthetic])
            skm = np.array([r["kernel_mass"] for r in synthetic])
            for h in range(skm.shape[1]):
                ax.loglog(sL, skm[:, h], "x--", color=f"C{h}", lw=0.8)
            ax.text(
                0.02, 0.95 - 0.07 * km.shape[1], "x: compact synthetic assemblies", transform=ax.transAxes, fontsize=7
            )
        xs = np.array([L.min(), max([L.max()] + [r["L"] for r in synthetic])], dtype=float)
        ax.loglog(xs, 10 * xs, "k:", label="10 L (linear)")
        ax.loglog(xs, xs**2, "k--", label="L^2")
        ax.set_title(f"{m}, block 0: sum_ij K_ij", fontsize=9)
        ax.set_xlabel("residues L")
        ax.legend(fontsize=6, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "spatial_kernel_mass_vs_L.png"), dpi=120)
    plt.close(fig)

    # terms: mass outside r = 12 A for each term, per model (mean over heads, blocks, chains)
    ri = RADII.index(12)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / len(TERMS)
    for ti, term in enumerate(TERMS):
        vals = []
        for m in models:
            for t in (1.0, 0.1):
                sel = [r for r in rows if r["model"] == m and r["t"] == t]
                vals.append(
                    np.mean([np.mean(np.array(r[term]["outside_r_mean"])[:, ri]) for r in sel]) if sel else np.nan
                )
        ax.bar(np.arange(len(vals)) + ti * width, vals, width, label=term)
    ax.set_xticks(np.arange(len(models) * 2) + 0.4)
    short = {m: m.replace(" (", "\n").replace(")", "") for m in models}
    ax.set_xticklabels([f"{short[m]}\nt={t}" for m in models for t in (1.0, 0.1)], fontsize=6)
    ax.set_ylabel("mass outside 12 A (mean)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "spatial_terms.png"), dpi=120)
    plt.close(fig)


@torch.no_grad()
def synthetic_kernel_mass(model, domain, lengths, chunk=32):
    """Block 0's point-kernel mass sum_ij K_ij per head on compact synthetic assemblies (chunked: no L x L)."""
    out = []
    for L in lengths:
        chain = sc.compact_assembly(domain, L, torch.Generator().manual_seed(L))
        rec = sc.block0_inputs(model, sc.model_inputs(chain, 1.0))
        x, y = rec.q_pts[0].double(), rec.kv["k_pts"][0].double()  # [L, H, P, 3]
        w = rec.point_weights.double()
        total = torch.zeros(x.shape[1], dtype=torch.float64)
        for s in range(0, L, chunk):
            d2 = (x[s : s + chunk, None] - y[None]).square().sum((-1, -2))  # [c, L, H]
            total += torch.exp(-0.5 * w * d2).sum((0, 1))
        out.append(dict(chain=chain.name, L=L, kernel_mass=total.tolist()))
        print(f"synthetic kernel mass L={L}: {[round(m / L, 1) for m in total.tolist()]} per row", flush=True)
    return out


def summarise(rows):
    """The committed summary: per (model, t, block, term) the median over chains of every mass curve
    ([H, n] per key), and per (model, t, chain) block 0's point-kernel mass (per head)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["t"], r["block"]), []).append(r)
    curves = [
        dict(
            model=m,
            t=t,
            block=b,
            chains=len(g),
            **{term: {key: _median(g, term, key).round(5).tolist() for key in g[0][term]} for term in TERMS},
        )
        for (m, t, b), g in groups.items()
    ]
    kernel = [
        dict(
            model=r["model"],
            t=r["t"],
            chain=r["chain"],
            L=r["L"],
            kernel_mass=r["kernel_mass"],
            point_weights=r["point_weights"],
        )
        for r in rows
        if r["block"] == 0
    ]
    return dict(curves=curves, kernel_mass=kernel)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="a flashipa-train checkpoint (trained weights); omitted: random only")
    parser.add_argument(
        "--ckpt-label",
        default="trained",
        help="the trained model's name in the tables (what it is, how it was trained)",
    )
    parser.add_argument("--max-length", type=int, default=2500)
    parser.add_argument("--out-json", default=os.path.join(sc.ROOT, "docs", "benchmarks", "spatial_assumption.json"))
    parser.add_argument("--fig-dir", default=os.path.join(sc.ROOT, "docs", "figures"))
    parser.add_argument("--no-anchor", action="store_true", help="skip the anchor-size random model")
    parser.add_argument("--limit", type=int, default=0, help="first N chains only (smoke runs)")
    parser.add_argument(
        "--synthetic-lengths",
        type=int,
        nargs="*",
        default=[1024, 4096, 16384],
        help="compact synthetic assemblies for the kernel mass vs L (anchor-size random model)",
    )
    parser.add_argument("--skip-folders", nargs="*", default=(), help="entries of these folders are left out")
    parser.add_argument("--rows-json", help="also write every row (large) to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    models = {"random (quickstart sizes)": sc.quickstart_model()}
    if not args.no_anchor:
        models["random (anchor sizes)"] = sc.anchor_model()
    if args.ckpt:
        models[args.ckpt_label] = sc.trained_model(args.ckpt)
    chains = sc.all_chains(skip_folders=args.skip_folders)
    if args.limit:
        chains = chains[: args.limit]
    print(f"{len(chains)} chains/assemblies, L {min(c.length for c in chains)}..{max(c.length for c in chains)}")
    rows = run(models, chains, (1.0, 0.1), args.max_length)
    os.makedirs(os.path.dirname(args.out_json), exist_ok=True)
    domain = max((c for c in chains if c.name.endswith("_A") and c.length < 300), key=lambda c: c.length)
    synthetic = synthetic_kernel_mass(sc.anchor_model(), domain, args.synthetic_lengths)
    meta = {
        "synthetic_kernel_mass_anchor_random": synthetic,
        "radii": RADII,
        "ks": KS,
        "window": WINDOW,
        "torch": torch.__version__,
        "device": "cpu",
        "ckpt": args.ckpt_label if args.ckpt else None,
    }
    with open(args.out_json, "w") as f:
        json.dump({**meta, **summarise(rows)}, f)
    if args.rows_json:
        with open(args.rows_json, "w") as f:
            json.dump({**meta, "rows": rows}, f)
    os.makedirs(args.fig_dir, exist_ok=True)
    plot(rows, args.fig_dir, synthetic)
    print(f"wrote {args.out_json} and {args.fig_dir}/spatial_*.png")


if __name__ == "__main__":
    main()
