"""CPU measurements of alpha-entmax IPA for docs/benchmarks/entmax.md: threshold passes per row
(Halley-bisection vs bisection to the same tolerance) and the fraction of key blocks that are all zero
(skipped by the kernel), on the chains of a preprocessed data/ directory and on synthetic long chains,
with the weights of a trained entmax_ipa checkpoint.

    python scripts/entmax_report.py --ckpt logs/quickstart/runs/<run>/checkpoints/last.ckpt \
        --cache cache/<data dir> --lengths 1024 2048 4096

Every trunk block's attention inputs are caught on the way (the torch backend), and the logits,
thresholds and block masks computed from them here, in float64, row by row as the kernels do.
Writes docs/benchmarks/entmax_cpu.json and re-renders docs/benchmarks/entmax.md.
"""

import argparse
import csv
import json
import platform
from pathlib import Path

import numpy as np
import torch

from flashipa_kernels.entmax_ipa.benchmark import render_markdown
from flashipa_kernels.entmax_ipa.threshold import BISECT, HALLEY, power_sums, solve_threshold, threshold_bracket
from flashipa_kernels.reference.factorized_attention import ipa_attention_features
from flashipa_train.data.synthetic import synthetic_batch
from flashipa_train.flow.interpolant import clean_frames, interpolate, sample_prior
from flashipa_train.geometry import centre
from flashipa_train.model import attention_entmax
from flashipa_train.sampling.checkpoint_model import load_sampler_from_checkpoint

BLOCKS = (64, 128)  # key/query block edges whose skip fraction is reported (the GPU kernel's is 64)
TOLERANCES = (1e-4, 1e-6, 1e-10)


def caught_attention_inputs(model, noisy):
    """Run the model once; return the entmax core's arguments of every trunk block."""
    caught = []
    core = attention_entmax.tiled_entmax_ipa_attention

    def catching(*args):
        caught.append([a.detach() if torch.is_tensor(a) else a for a in args])
        return core(*args)

    attention_entmax.tiled_entmax_ipa_attention = catching
    try:
        with torch.no_grad():
            model(noisy)
    finally:
        attention_entmax.tiled_entmax_ipa_attention = core
    return caught


def row_statistics(args, max_rows=512):
    """Passes per row of both solvers at each tolerance and the all-zero block fractions, one sequence.

    args: the core's (q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, alpha, mask)
    for batch size 1. Passes are counted on up to max_rows query rows (evenly spaced), blocks on all."""
    *inputs, alpha, mask = args
    x64 = [t.double() for t in inputs]
    q_feat, k_feat, _ = ipa_attention_features(*x64)  # [1, L, H, D]
    L, H = q_feat.shape[1], q_feat.shape[2]
    a = alpha.double()[:, None]  # [H, 1]
    real = mask[0].bool()
    stats = {"length": int(real.sum()), "passes": {}, "zero_block_fraction": {}, "support_fraction": []}
    rows = torch.linspace(0, L - 1, min(L, max_rows)).long().unique()
    for h in range(H):
        s = q_feat[0, :, h] @ k_feat[0, :, h].T  # [L, L]
        z = (a[h] - 1.0) * s.masked_fill(~real[None, :], float("-inf"))
        z_max = z.amax(-1)
        count = real.sum().expand(L)
        lo, hi = threshold_bracket(z_max, count, a[h])
        r = 1.0 / (a[h] - 1.0)
        tau, _, _ = solve_threshold(lambda t: power_sums(z - t[:, None], r), lo, hi, a[h], HALLEY, 1e-12, 200)
        support = (z > tau[:, None]) & real[:, None] & real[None, :]  # [L, L]
        stats["support_fraction"].append(float(support.sum() / (real.sum() ** 2)))
        for edge in BLOCKS:
            nb = -(-int(real.sum()) // edge)
            n = int(real.sum())
            blocks = torch.zeros(nb, nb, dtype=torch.bool)
            sup = support[:n, :n]
            pad = nb * edge - n
            sup = torch.nn.functional.pad(sup, (0, pad, 0, pad))
            blocks = sup.view(nb, edge, nb, edge).any(3).any(1)
            stats["zero_block_fraction"].setdefault(str(edge), []).append(float(1.0 - blocks.float().mean()))
        zr = z[rows]
        for tol in TOLERANCES:
            for method in (HALLEY, BISECT):
                _, _, passes = solve_threshold(
                    lambda t: power_sums(zr - t[:, None], r),
                    lo[rows],
                    hi[rows],
                    a[h],
                    method,
                    tol,
                    200,
                    active=real[rows],
                )
                stats["passes"].setdefault(f"{method}@{tol:g}", []).append(passes[real[rows]].double())
    stats["passes"] = {k: float(torch.cat(v).mean()) for k, v in stats["passes"].items()}
    stats["zero_block_fraction"] = {k: float(np.mean(v)) for k, v in stats["zero_block_fraction"].items()}
    stats["support_fraction"] = float(np.mean(stats["support_fraction"]))
    return stats


def noisy_from_atoms(atoms, residue_index, chain_index, t, generator):
    """The model's input at flow time t for one chain ([1, L, 4, 3] atoms, Angstrom)."""
    res_mask = torch.ones(atoms.shape[:2], dtype=torch.bool)
    rots_1, trans_1 = clean_frames(atoms, res_mask)
    rots_0, trans_0 = sample_prior(res_mask, 10.0, generator)
    tt = torch.full((1,), t)
    rots_t, trans_t = interpolate(rots_0, trans_0, rots_1, trans_1, tt, res_mask)
    return {
        "t": tt,
        "rots_t": rots_t,
        "trans_t": trans_t,
        "res_mask": res_mask,
        "residue_index": residue_index,
        "chain_index": chain_index,
    }


def real_chains(cache_dir, max_length):
    with open(Path(cache_dir) / "metadata.csv") as f:
        for row in csv.DictReader(f):
            if int(row["length"]) <= max_length:
                ex = np.load(Path(cache_dir) / row["example"])
                atoms = torch.from_numpy(ex["atoms"]).float()[None]  # [1, L, 4, 3]
                idx = torch.from_numpy(ex["residue_index"].astype(np.int64))[None]
                yield f"{row['entry']}:{row['chain']}", atoms, idx


def measure(model, name, atoms, residue_index, ts, generator):
    out = []
    chain_index = torch.zeros_like(residue_index)
    for t in ts:
        noisy = noisy_from_atoms(atoms, residue_index, chain_index, t, generator)
        for block, args in enumerate(caught_attention_inputs(model, noisy)):
            out.append({"chain": name, "t": t, "block": block, **row_statistics(args)})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint of an entmax_ipa run (flashipa-train)")
    parser.add_argument("--cache", required=True, help="preprocessed directory (metadata.csv, examples/)")
    parser.add_argument("--max-length", type=int, default=1000)
    parser.add_argument("--lengths", type=int, nargs="*", default=[1024, 2048])
    parser.add_argument("--t", type=float, nargs="*", default=[0.5, 0.9])
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(2)
    loaded = load_sampler_from_checkpoint(args.ckpt)
    model = loaded.model.float()
    model.attention.backend = "torch"  # the tiled torch core, which caught_attention_inputs intercepts
    if loaded.run_config["model"]["attention"]["name"] != "entmax_ipa":
        raise SystemExit(f"--ckpt {args.ckpt}: not an entmax_ipa run (model.attention.name)")
    g = torch.Generator().manual_seed(0)
    rows = []
    for name, atoms, idx in real_chains(args.cache, args.max_length):
        rows += measure(model, name, atoms, idx, args.t, g)
        print(name, rows[-1]["length"], rows[-1]["zero_block_fraction"], rows[-1]["passes"], flush=True)
    for L in args.lengths:
        batch = synthetic_batch(1, L, g)
        _, ca = centre(batch["atoms"][..., 1, :], batch["res_mask"])
        rows += measure(
            model, f"synthetic random walk L={L}", batch["atoms"] - ca[:, None, None], batch["residue_index"], args.t, g
        )
        print(L, rows[-1]["zero_block_fraction"], rows[-1]["passes"], flush=True)
    alphas = [ipa.alpha().tolist() for ipa in model.attention.ipa]
    result = {
        "checkpoint": str(args.ckpt),
        "model": loaded.run_config["model"],
        "alphas": alphas,
        "device": f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "blocks": BLOCKS,
        "tolerances": TOLERANCES,
        "rows": rows,
    }
    out = Path(args.out)
    (out / "entmax_cpu.json").write_text(json.dumps(result, indent=1))
    render_markdown(out)
    print(f"wrote {out / 'entmax_cpu.json'} and {out / 'entmax.md'}")


if __name__ == "__main__":
    main()
