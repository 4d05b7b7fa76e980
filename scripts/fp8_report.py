"""FP8 forward on the GPU: accuracy against the float64 reference (RMSE, relative error) of the bf16 kernel,
plain per-tensor FP8 and block-scaled FP8 with the Hadamard rotation, then forward times vs the bf16 kernel.

Usage (CUDA, sm_89+): python scripts/fp8_report.py --out DIR [--accuracy-length 4096] [--lengths 8192 32768]
Writes DIR/attention_fp8.{json,md}.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from flashipa_kernels.flash_ipa import flash_ipa_attention, fp8, launch
from flashipa_kernels.flash_ipa.attention import token_major
from flashipa_kernels.flash_ipa.benchmark import ANCHOR, _stamp, time_ms
from flashipa_kernels.flash_ipa.testing import random_ipa_inputs, relative_error
from flashipa_kernels.reference.factorized_attention import tiled_ipa_attention

OUTPUTS = ("o", "o_pts", "o_pair")
KERNELS = {
    "bf16": lambda xs: flash_ipa_attention(*xs),
    "fp8_tensor": lambda xs: fp8.flash_ipa_attention_fp8(*xs, mode="tensor"),
    "fp8_block_hadamard": lambda xs: fp8.flash_ipa_attention_fp8(*xs, mode="block_hadamard"),
}


def with_outliers(inputs, seed=0):
    """q and k plus FlashAttention-3's outliers: N(0, 10^2) added to 0.1% of the entries."""
    g = torch.Generator(device=inputs[0].device).manual_seed(seed)
    out = list(inputs)
    for i in (0, 1):
        x = inputs[i].float()
        hit = torch.rand(x.shape, generator=g, device=x.device) < 1e-3
        out[i] = (x + hit * torch.randn(x.shape, generator=g, device=x.device) * 10.0).to(inputs[i].dtype)
    return out


def accuracy(L):
    rows = []
    for data in ("gaussian", "outliers"):
        torch.manual_seed(0)
        inputs = random_ipa_inputs(1, L, ANCHOR, torch.bfloat16, "cuda", point_offset=100.0)
        if data == "outliers":
            inputs = with_outliers(inputs)
        with torch.no_grad():
            ref = tiled_ipa_attention(*[x.double() for x in inputs], tile=1024)
            for name, fn in KERNELS.items():
                try:
                    outs = fn(inputs)
                except Exception as exc:  # a kernel that fails is a row, not a crash
                    rows.append(dict(data=data, kernel=name, error=f"{type(exc).__name__}: {str(exc)[:300]}"))
                    print(json.dumps(rows[-1]), flush=True)
                    continue
                for o_name, a, r in zip(OUTPUTS, outs, ref):
                    rmse = (a.double() - r).square().mean().sqrt().item()
                    rows.append(dict(data=data, kernel=name, output=o_name, rmse=rmse, rel=relative_error(a, r)))
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def kernel_only(inputs, mode):
    """The FP8 kernel alone on operands prepared once (the call's prep ops excluded)."""
    q = inputs[0]
    B, L, H = q.shape[:3]
    tokens, key_mask, cu, max_seqlen = token_major(q, None, None, None)
    ops, d = fp8.operands_fp8(*[tokens(x) if x.dim() > 1 else x for x in inputs], key_mask, cu, max_seqlen, mode)
    dtypes = (inputs[2].dtype, inputs[5].dtype, inputs[8].dtype)
    return lambda: fp8.forward(ops, d, cu, max_seqlen, B * L, H, dtypes, q.device)


def _timed(row, make_fn, timer=lambda fn: time_ms(fn, 3, 10)):
    try:
        row["ms"] = timer(make_fn())
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    print(json.dumps(row), flush=True)
    return row


def host_ms(fn, repeat=20):
    """Median CPU time of one call that returns before the GPU is done (Python, dispatch, launches)."""
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize()
    return statistics.median(times)


def speed(lengths):
    rows = []
    for L in lengths:
        inputs = random_ipa_inputs(1, L, ANCHOR, torch.bfloat16, "cuda", point_offset=100.0)
        with torch.no_grad():
            for name, fn in KERNELS.items():
                rows.append(_timed(dict(L=L, kernel=name, what="call"), lambda: lambda: fn(inputs)))
            for mode in fp8.MODES:
                rows.append(_timed(dict(L=L, kernel=f"fp8_{mode}", what="kernel"), lambda: kernel_only(inputs, mode)))
            for name in ("bf16", "fp8_block_hadamard"):
                rows.append(_timed(dict(L=L, kernel=name, what="host"), lambda: lambda: KERNELS[name](inputs), host_ms))
        torch.cuda.empty_cache()
    return rows


def write_markdown(acc, spd, stamp, L_acc, path):
    lines = [
        "# FP8 (e4m3) forward for sampling",
        "",
        f"{stamp['device']}, torch {stamp['torch']}, triton {stamp['triton']}, {stamp['date']}; anchor dims "
        f"({stamp['dims']}), bf16 inputs, batch 1. `kernels/flash_ipa/fp8.py`: fp8_tensor is plain FP8 (one "
        "scale per tensor); fp8_block_hadamard rotates q and k by a random orthogonal Hadamard matrix and "
        "scales blocks of 64 tokens per head (values: one scale per head and column). Point-bias term in "
        "bf16 hi + lo in both.",
        "",
        f"## Error against the float64 reference (L = {L_acc}; outliers: N(0, 10^2) added to 0.1% of q, k)",
        "",
        "| data | kernel | " + " | ".join(f"{o} RMSE | {o} rel" for o in OUTPUTS) + " |",
        "|---|---|" + "---|---|" * len(OUTPUTS),
    ]
    for data in ("gaussian", "outliers"):
        for kernel in KERNELS:
            cells = []
            for o in OUTPUTS:
                r = next((r for r in acc if (r["data"], r["kernel"], r.get("output")) == (data, kernel, o)), None)
                cells += ["failed", "failed"] if r is None else [f"{r['rmse']:.3g}", f"{r['rel']:.3g}"]
            lines.append(f"| {data} | {kernel} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Forward time (ms, median of CUDA events; call: the whole call with its prep ops; "
        "kernel: the FP8 kernel alone on prepared operands)",
        "",
        "| L | bf16 call | fp8_tensor call | fp8_block_hadamard call | fp8_block_hadamard kernel | "
        "speed-up (call) | speed-up (kernel vs bf16 call) |",
        "|---|---|---|---|---|---|---|",
    ]
    for L in sorted({r["L"] for r in spd}):
        ms = {(r["kernel"], r["what"]): r.get("ms", float("nan")) for r in spd if r["L"] == L}
        bf, ft, fb = ms[("bf16", "call")], ms[("fp8_tensor", "call")], ms[("fp8_block_hadamard", "call")]
        fk = ms[("fp8_block_hadamard", "kernel")]
        lines.append(f"| {L} | {bf:.3g} | {ft:.3g} | {fb:.3g} | {fk:.3g} | {bf / fb:.2f}x | {bf / fk:.2f}x |")
    host = [f"L = {r['L']} {r['kernel']} {r['ms']:.3g} ms" for r in spd if r["what"] == "host" and "ms" in r]
    lines += ["", "Host time per forward call (CPU, median of 20, not waiting for the GPU): " + "; ".join(host)]
    failures = [r for r in acc + spd if "error" in r]
    if failures:
        lines += ["", "Failures:"] + [f"- {r}" for r in failures]
    Path(path).write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--accuracy-length", type=int, default=4096)
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768])
    args = parser.parse_args()
    stamp = _stamp("anchor", ANCHOR, "bf16 in, e4m3 dots")
    t0 = time.time()
    acc = accuracy(args.accuracy_length)
    print(f"accuracy done in {time.time() - t0:.0f} s; autotune {launch.AUTOTUNE}", flush=True)
    spd = speed(args.lengths)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attention_fp8.json").write_text(json.dumps(dict(stamp=stamp, accuracy=acc, speed=spd), indent=1))
    write_markdown(acc, spd, stamp, args.accuracy_length, out / "attention_fp8.md")
    print((out / "attention_fp8.md").read_text())


if __name__ == "__main__":
    main()
