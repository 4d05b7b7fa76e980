"""Scaling of spatially sparse IPA vs the FlashIPA kernel (issue #20, item 5): time, memory, error.

On compact synthetic chains (CA on a jittered cubic lattice of 0.5 nm, protein density ~8 residues per
nm^3, visited in serpentine order so that sequence neighbours are spatial neighbours; IPA points at
their CA + N(0, 0.3 nm)) with the anchor dims and random features, for each L:

  lists_ms          building the neighbour lists (cell list, k nearest within the radius + window)
  spatial_ms/_mib   spatially sparse attention forward+backward (Triton), lists given
  flash_ms/_mib     FlashIPA kernel forward+backward (exact attention), up to --flash-max-length
  rel_err           ||spatial - exact|| / ||exact|| on [o, o_pts - centre, o_pair], exact = FlashIPA
                    with exact float32 dots, up to --error-max-length (at the smallest L also with every
                    key in every list: rel_err_full_lists, a check of the comparison, ~1e-6)

and optionally one training step (forward+backward) of the anchor FlowModel with spatial_ipa at
--train-step-length. Timing as METHOD.md: warm-up, CUDA events, median. Without CUDA it runs on the
CPU (Triton interpreter) with host-clock times: a dry run of the script, not a measurement.

    PYTHONPATH=$PWD python scripts/spatial_benchmark.py --out docs/benchmarks --lengths 4096 16384 65536 262144
"""

import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

from flashipa_kernels.flash_ipa.testing import IPADims, random_ipa_inputs
from flashipa_kernels.spatial_ipa.ipa import spatial_ipa_attention
from flashipa_train.model.cell_list import spatial_neighbour_lists

ANCHOR = IPADims(heads=8, c=128, c_v=128, p_q=8, p_v=12, r_bias=26, r_pair=2, c_z=32)
TINY = IPADims(heads=2, c=8, c_v=8, p_q=2, p_v=2, r_bias=2, r_pair=1, c_z=4)


def compact_positions(L, generator, spacing=0.5, jitter=0.05):
    """[L, 3] CA positions (nm) of a compact chain: a serpentine walk through a jittered cubic lattice."""
    n = math.ceil(L ** (1 / 3))
    i = torch.arange(n**3)
    z, rem = i // (n * n), i % (n * n)
    y, x = rem // n, rem % n
    y = torch.where(z % 2 == 1, n - 1 - y, y)  # serpentine: every row and layer reverses
    x = torch.where((y + z * n) % 2 == 1, n - 1 - x, x)
    pos = torch.stack([x, y, z], -1).double() * spacing
    return (pos + jitter * torch.randn(pos.shape, generator=generator, dtype=torch.float64))[:L].float()


def compact_inputs(L, dims, dtype, device, generator, point_weight):
    """IPA attention inputs of one compact chain: points at their CA + N(0, 0.5 nm), every head's point
    weight `point_weight`; CA [1, L, 3]."""
    ca = compact_positions(L, generator)[None]
    inputs = random_ipa_inputs(1, L, dims, dtype, "cpu", point_scale=0.5, generator=generator)
    for i in (3, 4, 5):  # q_pts, k_pts, v_pts about their CA
        inputs[i] = (inputs[i].float() + ca[:, :, None, None]).to(dtype)
    inputs[0], inputs[1] = inputs[0] * 0.3, inputs[1] * 0.3  # scalar logits of order one
    inputs[9] = torch.full_like(inputs[9], point_weight)
    return [x.to(device) for x in inputs], ca.to(device)


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_ms(fn, warmup, repeat):
    """Median ms of fn(): CUDA events on a GPU, the host clock otherwise."""
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_mib(fn):
    if not torch.cuda.is_available():
        fn()
        return float("nan")
    _sync()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    _sync()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _fwd_bwd(fn, inputs):
    def run():
        outs = fn(inputs)
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])

    return run


def _flat(outs, centre):
    o, o_pts, o_pair = outs
    return torch.cat([o.flatten(), (o_pts - centre).flatten(), o_pair.flatten()]).double()


def bench_length(L, dims, dtype, device, args, generator):
    row = dict(L=L)
    try:
        inputs, ca = compact_inputs(L, dims, dtype, device, generator, args.point_weight)
        mask = torch.ones(1, L, dtype=torch.bool, device=device)
        ri, ch = torch.arange(L, device=device)[None], torch.zeros(1, L, dtype=torch.long, device=device)

        def build():
            return spatial_neighbour_lists(ca, mask, ri, ch, args.k, args.window, args.radius, args.max_per_cell)

        lists = build()
        row["list_len"] = float((lists.index >= 0).sum(-1).float().mean())
        row["lists_ms"] = time_ms(build, args.warmup, args.repeat)
        inputs = [x.requires_grad_() for x in inputs]

        def spatial(x):
            return spatial_ipa_attention(*x, mask, lists, backend="triton")

        row["spatial_ms"] = time_ms(_fwd_bwd(spatial, inputs), args.warmup, args.repeat)
        row["spatial_mib"] = peak_mib(_fwd_bwd(spatial, inputs))
        if L <= args.flash_max_length:
            from flashipa_kernels.flash_ipa import flash_ipa_attention

            def flash(x):
                return flash_ipa_attention(*x)

            row["flash_ms"] = time_ms(_fwd_bwd(flash, inputs), args.warmup, args.repeat)
            row["flash_mib"] = peak_mib(_fwd_bwd(flash, inputs))
            row["speedup"] = row["flash_ms"] / row["spatial_ms"]
        if L <= args.error_max_length:
            from flashipa_kernels.flash_ipa import flash_ipa_attention

            with torch.no_grad():
                f32 = [x.detach().float() for x in inputs]
                exact = flash_ipa_attention(*f32, allow_tf32=False)
                approx = spatial_ipa_attention(*f32, mask, lists, backend="triton")
                centre = f32[5].mean((1, 2, 3))[:, None, None, None]
                e, a = _flat(exact, centre), _flat(approx, centre)
                row["rel_err_fp32"] = float((a - e).norm() / e.norm())
                if L == min(args.lengths):  # a check of the comparison itself: every key in every list
                    full = spatial_neighbour_lists(ca, mask, ri, ch, L, 0, 1e4, L)
                    a = _flat(spatial_ipa_attention(*f32, mask, full, backend="triton"), centre)
                    row["rel_err_full_lists"] = float((a - e).norm() / e.norm())
    except torch.cuda.OutOfMemoryError:
        row["error"] = "OOM"
    except Exception as exc:  # a failure is a row, not a crash
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    finally:
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    print(json.dumps(row), flush=True)
    return row


def train_step(L, device, args, generator):
    """One forward+backward of the anchor FlowModel with spatial_ipa on a compact chain of L residues."""
    from flashipa_train.geometry import uniform_so3
    from flashipa_train.model import FlowModel

    row = dict(train_step_L=L)
    try:
        model = FlowModel(
            {
                "name": "spatial_ipa",
                "backend": "triton" if device == "cuda" else "torch",
                "k": args.k,
                "window": args.window,
                "radius": args.radius,
            },
            seq_transformer_layers=args.train_seq_layers,
            **(
                dict(checkpoint_blocks=args.train_checkpoint_blocks)
                if device == "cuda"
                else dict(c_s=16, c_hidden=4, num_blocks=1, num_heads=2)
            ),
        )
        model = model.to(device).train()
        trans = compact_positions(L, generator)[None].to(device) * 10.0  # Angstrom
        noisy = dict(
            trans_t=trans,
            rots_t=uniform_so3((1, L), generator=generator).to(device),
            t=torch.full((1,), 0.9, device=device),
            res_mask=torch.ones(1, L, dtype=torch.bool, device=device),
            residue_index=torch.arange(L, device=device)[None],
            chain_index=torch.zeros(1, L, dtype=torch.long, device=device),
        )

        def step():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                out = model(noisy)
            (out["pred_trans"].float().square().mean() + out["pred_rots"].float().sum()).backward()

        step()  # compile + warm-up
        _sync()
        t0 = time.perf_counter()
        row["train_step_mib"] = peak_mib(step)
        row["train_step_s"] = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError:
        row["error"] = "OOM"
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    print(json.dumps(row), flush=True)
    return row


def stamp(args, dims, dtype):
    import triton

    return dict(
        device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (interpreter dry run)",
        torch=torch.__version__,
        triton=triton.__version__,
        python=platform.python_version(),
        dtype=str(dtype).removeprefix("torch."),
        dims=dims.__dict__,
        k=args.k,
        window=args.window,
        radius_nm=args.radius,
        max_per_cell=args.max_per_cell,
        point_weight=args.point_weight,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def write_markdown(rows, st, path):
    lines = [
        f"# Spatially sparse IPA vs FlashIPA: forward+backward ({st['device']})",
        "",
        f"torch {st['torch']}, triton {st['triton']}, {st['dtype']}, dims {st['dims']}, k {st['k']}, "
        f"window {st['window']}, radius {st['radius_nm']} nm, point weight {st['point_weight']}, compact "
        f"synthetic chains; {st['date']}. "
        "Times: median of CUDA-event timed runs after warm-up; rel_err vs exact FlashIPA (fp32 dots).",
        "",
        "| L | list len | lists ms | spatial ms | spatial MiB | FlashIPA ms | FlashIPA MiB | speed-up | rel err fp32 | error |",  # noqa: E501 (a Markdown table row)
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "L" not in r:
            continue
        lines.append(
            f"| {r['L']} | {_fmt(r.get('list_len'), '.1f')} | {_fmt(r.get('lists_ms'), '.2f')} | "
            f"{_fmt(r.get('spatial_ms'), '.2f')} | {_fmt(r.get('spatial_mib'), '.0f')} | "
            f"{_fmt(r.get('flash_ms'), '.2f')} | {_fmt(r.get('flash_mib'), '.0f')} | "
            f"{_fmt(r.get('speedup'), '.1f')} | {_fmt(r.get('rel_err_fp32'), '.2e')} | {r.get('error', '')} |"
        )
    full = [r for r in rows if "rel_err_full_lists" in r]
    if full:
        lines += [
            "",
            f"Check: with every key in every list (L = {full[0]['L']}) the error vs FlashIPA is "
            f"{full[0]['rel_err_full_lists']:.1e}.",
        ]
    timed = [r for r in rows if "spatial_ms" in r and r["L"] >= 16384]
    if len(timed) >= 2:
        slope = math.log(timed[-1]["spatial_ms"] / timed[0]["spatial_ms"]) / math.log(timed[-1]["L"] / timed[0]["L"])
        lines += ["", f"Spatial time grows as L^{slope:.2f} from L = {timed[0]['L']} to {timed[-1]['L']}."]
    for r in rows:
        if "train_step_L" in r:
            lines += [
                "",
                f"One training step (anchor FlowModel, spatial_ipa, bf16 autocast) at L = {r['train_step_L']}: "
                f"{_fmt(r.get('train_step_s'), '.2f')} s, peak {_fmt(r.get('train_step_mib'), '.0f')} MiB {r.get('error', '')}",  # noqa: E501 (a Markdown table row)
            ]
    Path(path).write_text("\n".join(lines) + "\n")


def write_plot(rows, st, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "L" in r]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("spatial", "spatial IPA"), ("flash", "FlashIPA")):
        pts = [(r["L"], r[f"{key}_ms"], r.get(f"{key}_mib")) for r in rows if f"{key}_ms" in r]
        if pts:
            ax[0].loglog([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
            ax[1].loglog([p[0] for p in pts], [p[2] for p in pts], "o-", label=label)
    ax[0].set_ylabel("fwd+bwd ms (median)")
    ax[1].set_ylabel("peak MiB")
    for a in ax:
        a.set_xlabel("residues L")
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(f"{st['device']}, {st['dtype']}, k {st['k']}, window {st['window']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536, 262144])
    parser.add_argument("--dims", choices=("anchor", "tiny"), default="anchor")
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--radius", type=float, default=1.2)
    parser.add_argument("--max-per-cell", type=int, default=64)
    parser.add_argument(
        "--point-weight",
        type=float,
        default=0.096,
        help="per-head point weight; 0.096 is the anchor's at init (gamma = 1, P_q = 8)",
    )
    parser.add_argument("--flash-max-length", type=int, default=65536)
    parser.add_argument("--error-max-length", type=int, default=16384)
    parser.add_argument("--train-step-length", type=int, default=0, help="0: no training step")
    parser.add_argument("--train-seq-layers", type=int, default=0, help="sequence-transformer layers of that model")
    parser.add_argument("--train-checkpoint-blocks", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--name", default="spatial")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dims = ANCHOR if args.dims == "anchor" else TINY
    dtype = dict(bf16=torch.bfloat16, fp32=torch.float32)[args.dtype]
    generator = torch.Generator().manual_seed(0)
    st = stamp(args, dims, dtype)
    print(json.dumps(st), flush=True)
    rows = [bench_length(L, dims, dtype, device, args, generator) for L in args.lengths]
    if args.train_step_length:
        rows.append(train_step(args.train_step_length, device, args, generator))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(dict(stamp=st, rows=rows), indent=1))
    write_markdown(rows, st, out / f"{args.name}.md")
    write_plot(rows, st, out / f"{args.name}.png")
    print((out / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
