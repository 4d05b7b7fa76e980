"""`flashipa-bench`: time IPA attention forward and forward+backward on a CUDA GPU.

Backends, all on the same per-residue features (`flashipa_kernels.flash_ipa.testing.random_ipa_inputs`):
  dense     the O(L^2) reference (`flashipa_kernels.reference.dense_attention`), pair tensors materialised
  sdpa      flash_ipa's method: concatenated features zero-padded to one head dim, pair values
            copied per head, torch's scaled_dot_product_attention with torch's own choice of
            kernel: on the H200 (torch 2.11) cuDNN's Hopper attention, not FlashAttention-2
  sdpa_fa2  the same, forced to SDPBackend.FLASH_ATTENTION: the FlashAttention-2 kernel that
            flash_ipa's own code calls
  flex      torch's FlexAttention (compiled) on the same concatenated features, unpadded
  flashipa  this project's fused Triton kernel

Timing follows the device's METHOD.md: warm-up runs first (compilation and autotuning stay out),
then CUDA events around each of >= 10 runs, median reported. Peak memory is
torch.cuda.max_memory_allocated over one run, minus what was allocated before it. An out-of-memory
or any other failure becomes a row with its reason, not a crash. Writes attention.{json,md,png};
with --profile, also {name}_kernels.{json,md}: each backend's fwd+bwd split into its GPU kernels
(torch.profiler) and the host time per call. scripts/device_kernel.sh runs one process per backend.
"""

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from flashipa_kernels.flash_ipa.attention import flash_ipa_attention
from flashipa_kernels.flash_ipa.testing import IPADims, random_ipa_inputs
from flashipa_kernels.reference.factorized_attention import ipa_attention_features
from flashipa_kernels.sdpa_ipa import sdpa_ipa_attention

# the anchor model's dims (flash_ipa's example): per head 128 scalar q/k/v channels, 8 query/key
# points, 12 value points, pair-factor rank 2 with 32 pair-value channels
ANCHOR = IPADims(heads=8, c=128, c_v=128, p_q=8, p_v=12, r_bias=2, r_pair=2, c_z=32)
SMALL_HEAD = IPADims(heads=8, c=16, c_v=16, p_q=8, p_v=12, r_bias=2, r_pair=2, c_z=32)
# the trained trunk's default (model/attention=flash_ipa): 8 + 1 self-conditioned points, bias rank 26 static
# + 16 content_relpos (point tile 32 + bias tile 64)
TRUNK = IPADims(heads=8, c=128, c_v=128, p_q=9, p_v=12, r_bias=42, r_pair=2, c_z=32)
DIMS = {"anchor": ANCHOR, "small_head": SMALL_HEAD, "trunk": TRUNK}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _flashipa(inputs):
    return flash_ipa_attention(*inputs)


def _sdpa(inputs):
    return sdpa_ipa_attention(*inputs)


def _sdpa_fa2(inputs):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return sdpa_ipa_attention(*inputs)


def _dense(inputs):
    from flashipa_kernels.reference.dense_attention import dense_ipa_attention
    from flashipa_kernels.reference.factorized_attention import pair_bias_from_factors, pair_values_from_factors

    q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, pw = inputs
    pair_q = pair_k  # any [B, L, R, C_z] factor: only the cost matters here
    o, o_pts, o_pair = dense_ipa_attention(
        q,
        k,
        v,
        q_pts,
        k_pts,
        v_pts,
        pair_bias_from_factors(bias_q, bias_k),
        pair_values_from_factors(pair_q, pair_k),
        pw,
    )
    return o, o_pts, o_pair


_FLEX: dict[str, Callable[..., torch.Tensor]] = {}  # the compiled flex_attention, built on first use


def _flex(inputs):
    from torch.nn.attention.flex_attention import flex_attention

    if "fn" not in _FLEX:
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    q_feat, k_feat, v_feat = ipa_attention_features(*inputs)
    o = _FLEX["fn"](q_feat.transpose(1, 2), k_feat.transpose(1, 2), v_feat.transpose(1, 2), scale=1.0)
    return (o,)  # [B, H, L, D_v], split-free: the views cost nothing


BACKENDS = {"dense": _dense, "sdpa": _sdpa, "sdpa_fa2": _sdpa_fa2, "flex": _flex, "flashipa": _flashipa}
BASELINES = ("sdpa", "sdpa_fa2", "flex")  # the ratio columns: flashipa's speed-up over each


def time_ms(fn, warmup, repeat):
    """Median milliseconds of fn() over `repeat` CUDA-event-timed runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _peak_mib(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def attention_flops(B, L, dims, mode):
    """Useful matrix FLOPs of IPA attention: logits over C + 3 P_q + R_b + 1 features and the
    weighted sum over C_v + 3 P_v + R C_z features; backward counted as 2.5x forward."""
    d_qk = dims.c + 3 * dims.p_q + dims.r_bias + 1
    d_v = dims.c_v + 3 * dims.p_v + dims.r_pair * dims.c_z
    fwd = 2.0 * B * dims.heads * L * L * (d_qk + d_v)
    return fwd if mode == "fwd" else 3.5 * fwd


def _runner(backend, inputs, mode):
    fn = BACKENDS[backend]
    if mode == "fwd":

        def run():
            with torch.no_grad():
                fn(inputs)
    else:
        inputs = [x.requires_grad_() for x in inputs]

        def run():
            outs = fn(inputs)
            torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    return run


def bench_one(backend, B, L, dims, dtype, mode, warmup, repeat):
    """One row: median ms and peak MiB of `backend` at batch B and length L, or the failure."""
    row = dict(backend=backend, B=B, L=L, mode=mode)
    inputs = None
    try:
        inputs = random_ipa_inputs(B, L, dims, dtype, "cuda", point_scale=3.0)
        run = _runner(backend, inputs, mode)
        row["ms"] = time_ms(run, warmup, repeat)
        row["peak_mib"] = _peak_mib(run)
        row["tflops"] = attention_flops(B, L, dims, mode) / (row["ms"] * 1e-3) / 1e12
    except torch.cuda.OutOfMemoryError:
        row["error"] = "OOM"
    except Exception as exc:  # a backend that cannot run a shape is a row, not a crash
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    finally:
        inputs = None
        torch.cuda.empty_cache()
    return row


# GPU kernels of flashipa by role; any other kernel of a call is host-side preparation (elementwise ops)
KERNEL_ROLES = (
    ("_ipa_fwd_kernel", "fwd"),
    ("_ipa_bwd_dk_kernel", "dK"),
    ("_ipa_bwd_dv_kernel", "dV"),
    ("_ipa_bwd_dq_kernel", "dQ"),
    ("_ipa_bwd_preprocess_kernel", "Delta"),
)


def kernel_breakdown(backend, L, dims, dtype, warmup=3, repeat=5):
    """fwd+bwd of one backend at batch 1 split by GPU kernel (torch.profiler, ms per call summed over
    `repeat` calls) and the host time per call (perf_counter around the call, without waiting for the
    GPU: the Python, dispatch and launch cost). flashipa's kernels are named by role, the rest
    grouped as "prep/other"; other backends list their largest kernels by name."""
    from torch.profiler import ProfilerActivity, profile

    inputs = random_ipa_inputs(1, L, dims, dtype, "cuda", point_scale=3.0)
    run = _runner(backend, inputs, "fwdbwd")
    fwd = _runner(backend, [x.detach() for x in inputs], "fwd")
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    host = []
    for _ in range(repeat):  # the forward's host time: the call returns before the GPU is done
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fwd()
        host.append((time.perf_counter() - t0) * 1e3)
        torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeat):
            run()
        torch.cuda.synchronize()
    times = {}
    for event in prof.key_averages():
        ms = getattr(event, "device_time_total", getattr(event, "cuda_time_total", 0.0)) / 1e3 / repeat
        if ms <= 0:
            continue
        role = next((r for k, r in KERNEL_ROLES if k in event.key), None)
        if backend == "flashipa":
            role = role or "prep/other"
        else:
            role = event.key[:70]
        times[role] = times.get(role, 0.0) + ms
    top = dict(sorted(times.items(), key=lambda kv: -kv[1])[:8])
    return dict(
        backend=backend, L=L, kernels_ms=top, gpu_total_ms=sum(times.values()), host_fwd_ms=statistics.median(host)
    )


def write_kernel_markdown(rows, stamp, path):
    lines = [
        f"# Per-kernel breakdown of fwd+bwd ({stamp['dims_name']} dims, batch 1)",
        "",
        f"{stamp['device']}, torch {stamp['torch']}, triton {stamp['triton']}, {stamp['dtype']}, "
        f"{stamp['date']}. torch.profiler device time per call (ms); host: the forward call's "
        "time on the CPU without waiting for the GPU (median).",
        "",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"- {r['backend']} L={r['L']}: {r['error']}")
            continue
        parts = ", ".join(f"{k} {v:.3g}" for k, v in r["kernels_ms"].items())
        lines.append(
            f"- **{r['backend']}**, L = {r['L']}: GPU {r['gpu_total_ms']:.3g} ms ({parts}); "
            f"host (fwd call) {r['host_fwd_ms']:.3g} ms"
        )
    Path(path).write_text("\n".join(lines) + "\n")


def _stamp(dims_name, dims, dtype_name):
    import triton

    return dict(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=triton.__version__,
        python=platform.python_version(),
        dtype=dtype_name,
        dims_name=dims_name,
        dims=dims.__dict__,
        qk_features=dims.c + 3 * dims.p_q + dims.r_bias + 1,
        v_features=dims.c_v + 3 * dims.p_v + dims.r_pair * dims.c_z,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def write_markdown(rows, stamp, path):
    """Table of ms (and peak MiB) per length, batch and backend, with speed-ups over sdpa."""
    backends = [b for b in BACKENDS if any(r["backend"] == b for r in rows)]
    lines = [
        f"# IPA attention benchmark ({stamp['dims_name']} dims)",
        "",
        f"{stamp['device']}, torch {stamp['torch']}, triton {stamp['triton']}, {stamp['dtype']}, "
        f"{stamp['date']}. Dims per head: {stamp['dims']}; q.k features {stamp['qk_features']}, "
        f"v features {stamp['v_features']}. Median of CUDA-event timings after warm-up; "
        "time in ms, peak extra memory in MiB; fwd+bwd includes the forward. sdpa is torch's own "
        "choice of kernel (cuDNN's Hopper attention on the H200), sdpa_fa2 the same forced to "
        "FlashAttention-2 (flash_ipa's path); ratios > 1: flashipa faster.",
        "",
        "| B | L | mode | " + " | ".join(backends) + " | " + " | ".join(f"flashipa vs {b}" for b in BASELINES) + " |",
        "|---|---|---|" + "---|" * (len(backends) + len(BASELINES)),
    ]
    keys = sorted({(r["mode"], r["B"], r["L"]) for r in rows}, key=lambda k: (k[0], k[2], k[1]))
    for mode, B, L in keys:
        cells, ms = [], {}
        for b in backends:
            r = next((r for r in rows if (r["backend"], r["mode"], r["B"], r["L"]) == (b, mode, B, L)), None)
            if r is None:
                cells.append("-")
            elif "error" in r:
                cells.append(r["error"] if r["error"] == "OOM" else "failed")
            else:
                ms[b] = r["ms"]
                cells.append(f"{r['ms']:.3g} ms / {r['peak_mib']:.0f} MiB")
        ratios = [f"{ms[o] / ms['flashipa']:.2f}x" if o in ms and "flashipa" in ms else "-" for o in BASELINES]
        mode_name = "fwd" if mode == "fwd" else "fwd+bwd"
        lines.append(f"| {B} | {L} | {mode_name} | " + " | ".join(cells + ratios) + " |")
    failures = [r for r in rows if "error" in r and r["error"] != "OOM"]
    if failures:
        lines += ["", "Failures:"]
        lines += [f"- {r['backend']} B={r['B']} L={r['L']} {r['mode']}: {r['error']}" for r in failures]
    Path(path).write_text("\n".join(lines) + "\n")


def write_plot(rows, stamp, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, mode in zip(axes, ("fwd", "fwdbwd")):
        for backend in BACKENDS:
            pts = sorted(
                (r["L"], r["ms"])
                for r in rows
                if r["backend"] == backend and r["mode"] == mode and r["B"] == 1 and "ms" in r
            )
            if pts:
                ax.loglog(*zip(*pts), marker="o", label=backend)
        ax.set_xlabel("L (residues), batch 1")
        ax.set_ylabel("ms")
        ax.set_title("forward" if mode == "fwd" else "forward + backward")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(
        f"IPA attention, {stamp['device']}, {stamp['dtype']}, {stamp['dims_name']} dims, "
        f"torch {stamp['torch']}, triton {stamp['triton']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="flashipa-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[2**i for i in range(7, 17)])
    parser.add_argument(
        "--token-budget",
        type=int,
        default=0,
        help="also time batch = budget // L at each length where that is > 1 (0: off)",
    )
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--max-dense-length", type=int, default=4096, help="skip dense above this L")
    parser.add_argument(
        "--flex-lengths",
        type=int,
        nargs="*",
        default=None,
        help="lengths at which flex runs (default: all; each length compiles once)",
    )
    parser.add_argument("--dims", default="anchor", choices=list(DIMS))
    parser.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", default="docs/benchmarks", help="folder for attention.{json,md,png}")
    parser.add_argument("--name", default="attention", help="file stem of the outputs")
    parser.add_argument(
        "--profile",
        type=int,
        nargs="*",
        default=[],
        help="lengths at which to write the per-kernel breakdown ({name}_kernels.*)",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("flashipa-bench: needs a CUDA GPU (torch.cuda.is_available() is False)")

    dims, dtype = DIMS[args.dims], DTYPES[args.dtype]
    stamp = _stamp(args.dims, dims, args.dtype)
    print(json.dumps(dict(stamp=stamp)), flush=True)  # first line: a process cut short still has its stamp
    rows = []
    for L in args.lengths:
        batches = [1] + ([args.token_budget // L] if args.token_budget // L > 1 else [])
        for B in batches:
            for backend in args.backends:
                if backend == "dense" and L > args.max_dense_length:
                    continue
                if backend == "flex" and args.flex_lengths is not None and L not in args.flex_lengths:
                    continue
                for mode in args.modes:
                    row = bench_one(backend, B, L, dims, dtype, mode, args.warmup, args.repeat)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        prof_rows = []
        for L in args.profile:
            for backend in args.backends:
                try:
                    prof_rows.append(kernel_breakdown(backend, L, dims, dtype))
                except Exception as exc:
                    prof_rows.append(dict(backend=backend, L=L, error=f"{type(exc).__name__}: {str(exc)[:120]}"))
                print(json.dumps(prof_rows[-1]), flush=True)
                torch.cuda.empty_cache()
        (out / f"{args.name}_kernels.json").write_text(json.dumps(dict(stamp=stamp, rows=prof_rows), indent=1))
        write_kernel_markdown(prof_rows, stamp, out / f"{args.name}_kernels.md")
    (out / f"{args.name}.json").write_text(json.dumps(dict(stamp=stamp, rows=rows), indent=1))
    write_markdown(rows, stamp, out / f"{args.name}.md")
    try:
        write_plot(rows, stamp, out / f"{args.name}.png")
    except ImportError as exc:
        print(f"flashipa-bench: no plot ({exc})")
    print((out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
