"""Time alpha-entmax IPA against the softmax FlashIPA kernel and SDPA on a CUDA GPU; render entmax.md.

    python -m flashipa_kernels.entmax_ipa.benchmark --lengths 2048 8192 32768 65536 --out docs/benchmarks

Inputs (`random_ipa_inputs` at the anchor dims, bf16, B = 1) in two regimes:
  random  points N(0, 3^2) per coordinate: tiny supports at random places, so almost every key
          block holds some nonzero weight (entmax cannot skip: its cost over softmax is the
          threshold passes)
  chain   the points of residue i offset by a random walk of 0.38 nm steps (CA-CA in the trunk's
          unit): far residues get zero weight and whole key blocks are skipped
Each row: median ms of fwd and fwd+bwd (METHOD.md: warm-up, CUDA events, median), peak MiB, and for
entmax the fraction of skipped key blocks and the mean / max threshold passes per row. A failure is a
row with its reason. Writes entmax.json; `render_markdown` turns entmax.json and the CPU
measurements (entmax_cpu.json, scripts/entmax_report.py) into entmax.md (+ entmax.png).
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from flashipa_kernels.flash_ipa.benchmark import time_ms
from flashipa_kernels.flash_ipa.testing import IPADims, random_ipa_inputs

ANCHOR = IPADims(heads=8, c=128, c_v=128, p_q=8, p_v=12, r_bias=2, r_pair=2, c_z=32)  # flash_ipa's example dims
ALPHA = 1.5


def chain_inputs(L, dims, dtype, device, step=0.38, seed=0):
    """random_ipa_inputs with every point of residue i moved by a random walk of `step` per residue."""
    g = torch.Generator().manual_seed(seed)
    inputs = random_ipa_inputs(1, L, dims, torch.float32, "cpu", point_scale=0.3, generator=g)
    walk = torch.randn(1, L, 3, generator=g)
    walk = step * torch.cumsum(walk / walk.norm(dim=-1, keepdim=True), dim=1)[:, :, None, None, :]
    for i in (3, 4, 5):  # q_pts, k_pts, v_pts
        inputs[i] = inputs[i] + walk
    return [x.to(device, dtype) for x in inputs]


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run (TRITON_INTERPRET=1, tiny L)


def _inputs(regime, L, dims, dtype):
    if regime == "chain":
        return chain_inputs(L, dims, dtype, DEVICE)
    return random_ipa_inputs(1, L, dims, dtype, DEVICE, point_scale=3.0, generator=torch.Generator().manual_seed(0))


def _backends():
    from flashipa_kernels.entmax_ipa import entmax_ipa_attention
    from flashipa_kernels.flash_ipa import flash_ipa_attention
    from flashipa_kernels.sdpa_ipa import sdpa_ipa_attention

    alpha = torch.full((ANCHOR.heads,), ALPHA, device=DEVICE)
    return {
        "entmax": lambda x: entmax_ipa_attention(*x, alpha),
        "flashipa": lambda x: flash_ipa_attention(*x),
        "sdpa": lambda x: sdpa_ipa_attention(*x),
    }


def _time_ms(fn, warmup, repeat):
    if DEVICE == "cpu":
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    return time_ms(fn, warmup, repeat)


def _peak_mib(fn):
    if DEVICE == "cpu":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def bench_one(name, fn, regime, L, dtype, mode):
    row = dict(backend=name, regime=regime, L=L, mode=mode)
    try:
        inputs = _inputs(regime, L, ANCHOR, dtype)
        if mode == "fwd":

            def run():
                with torch.no_grad():
                    fn(inputs)
        else:
            inputs = [x.requires_grad_() for x in inputs]
            grads = None

            def run():
                nonlocal grads
                outs = fn(inputs)
                if grads is None:
                    grads = [torch.randn_like(o) for o in outs]
                torch.autograd.backward(outs, grads)

        repeat = 10 if L <= 16384 else 3
        row["ms"] = _time_ms(run, 2, repeat)
        row["peak_mib"] = _peak_mib(run)
        if name == "entmax" and mode == "fwd":
            from flashipa_kernels.entmax_ipa import entmax_ipa_threshold_stats

            stats = entmax_ipa_threshold_stats(*inputs, ALPHA)
            row["skipped_blocks"] = 1.0 - stats["kept_fraction"]
            row["passes_mean"] = stats["passes"].float().mean().item()
            row["passes_max"] = int(stats["passes"].max())
            row["blocks"] = list(stats["blocks"])
    except Exception as e:  # noqa: BLE001 (a failure is a row)
        row["error"] = f"{type(e).__name__}: {str(e)[:200]}"
        torch.cuda.empty_cache()
    print(json.dumps(row), flush=True)
    return row


def _table(rows, regime):
    lines = [
        "| L | mode | entmax ms | flashipa ms | sdpa ms | entmax / flashipa | skipped key blocks | passes mean / max | entmax MiB |",  # noqa: E501 (a Markdown table row)
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keyed = {(r["backend"], r["L"], r["mode"]): r for r in rows if r["regime"] == regime}
    for L in sorted({r["L"] for r in rows if r["regime"] == regime}):
        for mode in ("fwd", "fwd+bwd"):
            get = {b: keyed.get((b, L, mode), {}) for b in ("entmax", "flashipa", "sdpa")}
            ms = {b: (f"{r['ms']:.2f}" if "ms" in r else r.get("error", "-")[:40]) for b, r in get.items()}
            ratio = (
                f"{get['entmax']['ms'] / get['flashipa']['ms']:.2f}"
                if "ms" in get["entmax"] and "ms" in get["flashipa"]
                else "-"
            )
            fwd = keyed.get(("entmax", L, "fwd"), {})
            skip = f"{fwd['skipped_blocks']:.1%}" if "skipped_blocks" in fwd else "-"
            passes = f"{fwd['passes_mean']:.2f} / {fwd['passes_max']}" if "passes_mean" in fwd else "-"
            mib = f"{get['entmax']['peak_mib']:.0f}" if "peak_mib" in get["entmax"] else "-"
            lines.append(
                f"| {L} | {mode} | {ms['entmax']} | {ms['flashipa']} | {ms['sdpa']} | {ratio} | {skip} | {passes} | {mib} |"  # noqa: E501 (a Markdown table row)
            )
    return lines


def _cpu_sections(cpu):
    rows = cpu["rows"]
    lines = [
        f"Weights: `{cpu['checkpoint']}` (alpha per block and head: {cpu['alphas']}); {cpu['device']}, "
        f"torch {cpu['torch']}. Every trunk block's attention inputs at flow times t = "
        f"{sorted({r['t'] for r in rows})}, thresholds in float64.",
        "",
        "### Threshold passes per query row (evaluations of f, each one pass over the keys)",
        "",
        "| chains | tolerance abs(sum p - 1) | Halley-bisection | bisection | ratio |",
        "|---|---|---|---|---|",
    ]
    groups = {
        "data/ chains": [r for r in rows if not r["chain"].startswith("synthetic")],
        "synthetic chains": [r for r in rows if r["chain"].startswith("synthetic")],
    }
    for gname, grows in groups.items():
        if not grows:
            continue
        for tol in cpu["tolerances"]:
            h = sum(r["passes"][f"halley@{tol:g}"] for r in grows) / len(grows)
            b = sum(r["passes"][f"bisect@{tol:g}"] for r in grows) / len(grows)
            lines.append(
                f"| {gname} ({len({r['chain'] for r in grows})}) | {tol:g} | {h:.2f} | {b:.2f} | {b / h:.1f}x |"
            )
    lines += [
        "",
        "### All-zero key blocks (skipped by the kernel) and support",
        "",
        "| chain | length | t | " + " | ".join(f"zero {e}x{e} blocks" for e in cpu["blocks"]) + " | nonzero weights |",
        "|---|---|---|" + "---|" * (len(cpu["blocks"]) + 1),
    ]
    by_chain = {}
    for r in rows:
        by_chain.setdefault((r["chain"], r["length"], r["t"]), []).append(r)
    for (chain, length, t), rs in sorted(by_chain.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        zeros = " | ".join(f"{sum(r['zero_block_fraction'][str(e)] for r in rs) / len(rs):.1%}" for e in cpu["blocks"])
        support = sum(r["support_fraction"] for r in rs) / len(rs)
        lines.append(f"| {chain} | {length} | {t} | {zeros} | {support:.2%} |")
    return lines


def render_markdown(out):
    """docs/benchmarks/entmax.md from entmax.json (GPU; its optional "note" is printed under the stamp)
    and entmax_cpu.json (CPU), whichever exist."""
    out = Path(out)
    lines = [
        "# alpha-entmax IPA (`kernels/entmax_ipa`, `model/attention=entmax_ipa`)",
        "",
        "Written by `kernels/entmax_ipa/benchmark.py` (GPU, `scripts/device_entmax.sh`) and "
        "`scripts/entmax_report.py` (CPU).",
        "",
    ]
    gpu_path, cpu_path = out / "entmax.json", out / "entmax_cpu.json"
    if gpu_path.exists():
        gpu = json.loads(gpu_path.read_text())
        lines += ["## Time on the GPU", "", f"{gpu['stamp']}", ""] + ([gpu["note"], ""] if "note" in gpu else [])
        for regime in ("random", "chain"):
            lines += [f"### {regime} inputs", ""] + _table(gpu["rows"], regime) + [""]
        _plot(gpu, out / "entmax.png")
    else:
        lines += ["## Time on the GPU", "", "Not measured yet: `bash scripts/device_entmax.sh` on the device.", ""]
    if cpu_path.exists():
        lines += ["## Threshold search and block sparsity (CPU)", ""] + _cpu_sections(json.loads(cpu_path.read_text()))
    quality_files = (("entmax_quickstart.json", "quickstart runs"), ("entmax_gpu_quality.json", "10-minute H200 runs"))
    for name, title in quality_files:
        quality_path = out / name
        if not quality_path.exists():  # collected from the runs' metrics.csv (and sample scores)
            continue
        quality = json.loads(quality_path.read_text())
        cols = list(quality["rows"][0])
        lines += [
            "",
            f"## Quality: {title} side by side",
            "",
            quality["note"],
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
        ]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in quality["rows"]]
    (out / "entmax.md").write_text("\n".join(lines) + "\n")


def _plot(gpu, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, regime in zip(axes, ("random", "chain")):
        for backend, style in (("entmax", "o-"), ("flashipa", "s--"), ("sdpa", "^:")):
            for mode, alpha in (("fwd", 0.5), ("fwd+bwd", 1.0)):
                pts = sorted(
                    (r["L"], r["ms"])
                    for r in gpu["rows"]
                    if r["backend"] == backend and r["regime"] == regime and r["mode"] == mode and "ms" in r
                )
                if pts:
                    ax.loglog(*zip(*pts), style, alpha=alpha, label=f"{backend} {mode}")
        ax.set_title(f"{regime} inputs")
        ax.set_xlabel("L")
    axes[0].set_ylabel("ms (median)")
    axes[1].legend(fontsize=7)
    fig.suptitle(gpu["stamp"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description="alpha-entmax IPA vs softmax FlashIPA and SDPA (CUDA)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 32768, 65536])
    parser.add_argument("--backends", nargs="+", default=["entmax", "flashipa", "sdpa"])
    parser.add_argument("--regimes", nargs="+", default=["random", "chain"])
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--dims", choices=["anchor", "tiny"], default="anchor", help="tiny: a CPU dry run")
    args = parser.parse_args(argv)
    global ANCHOR
    if args.dims == "tiny":
        ANCHOR = IPADims(heads=2, c=16, c_v=16, p_q=2, p_v=2, r_bias=2, r_pair=1, c_z=4)
    import triton

    dtype = torch.bfloat16
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU dry run (not a measurement)"
    stamp = (
        f"{device}, torch {torch.__version__}, triton {triton.__version__}, "
        f"bf16, B = 1, dims {ANCHOR}, alpha {ALPHA}, {platform.node()}"
    )
    backends = _backends()
    rows = [
        bench_one(name, backends[name], regime, L, dtype, mode)
        for regime in args.regimes
        for L in args.lengths
        for name in args.backends
        for mode in ("fwd", "fwd+bwd")
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "entmax.json").write_text(json.dumps(dict(stamp=stamp, rows=rows), indent=1))
    render_markdown(out)


if __name__ == "__main__":
    main()
