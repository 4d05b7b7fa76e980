"""Time one training step (flow-matching loss, backward, AdamW step) per attention variant and backend.

Synthetic chains (a 3.8 A random walk of CA positions with random frames) at B x L; the anchor model's
sizes by default (c_s 256, c_z 128, 6 blocks, 8 heads, 8/12 points, rank 2). Follows the device's
METHOD.md: warm-up steps, then CUDA-event timing of each step, median reported, peak memory per point.
An out-of-memory or other failure becomes a row with its status, and the run goes on.

    python scripts/bench_train_step.py --points 256x8 1024x2 --variants dense_ipa flash_ipa:sdpa flash_ipa:triton
Writes OUT/train_step.{json,md}.
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch

from flashipa_train.flow import FlowMatcher
from flashipa_train.data.synthetic import synthetic_batch
from flashipa_train.model import FlowModel

ANCHOR = dict(c_s=256, c_z=128, c_hidden=128, num_blocks=6, num_heads=8, num_qk_points=8, num_v_points=12,
              pair_rank=2, c_pair_value=32, seq_transformer_layers=2, seq_transformer_heads=4, knn=16)


def time_steps(variant, backend, batch_size, length, precision, warmup, repeat, model_sizes, device):
    """Median step time (ms) and peak memory (GiB) of `repeat` timed training steps."""
    torch.manual_seed(0)
    model = FlowModel(attention={"name": variant, "backend": backend}, **model_sizes).to(device)
    flow = FlowMatcher(self_condition_prob=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = {key: value.to(device) for key, value in
             synthetic_batch(batch_size, length, torch.Generator().manual_seed(length)).items() if torch.is_tensor(value)}
    generator = torch.Generator(device=device).manual_seed(0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step():
        with autocast:
            loss = flow.training_loss(model, batch, generator=generator)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        losses.append(step().detach())
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return {
        "step_ms": statistics.median(times),
        "step_ms_min": min(times),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "loss": float(torch.stack(losses).float().mean()),
        "residues_per_s": batch_size * length / (statistics.median(times) / 1e3),
    }


def markdown(rows, meta):
    lines = [
        f"# Training step per variant ({meta['device']}, torch {meta['torch']}, triton {meta['triton']}, {meta['precision']})",
        "",
        f"Model: {meta['model']}. Self-conditioning 0.5, AdamW, grad clipping; median of {meta['repeat']} steps after "
        f"{meta['warmup']} warm-up steps, CUDA events. Synthetic random-walk chains.",
        "",
        "| variant | backend | L x batch | status | step (ms) | residues/s | peak memory (GiB) | loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] == "ok":
            lines.append(f"| {r['variant']} | {r['backend']} | {r['length']} x {r['batch']} | ok | {r['step_ms']:.1f} | "
                         f"{r['residues_per_s']:.0f} | {r['peak_gib']:.2f} | {r['loss']:.3f} |")
        else:
            lines.append(f"| {r['variant']} | {r['backend']} | {r['length']} x {r['batch']} | {r['status']} | | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", nargs="+", default=["256x8"], help="LxB points, e.g. 256x8 4096x1")
    parser.add_argument("--variants", nargs="+", default=["dense_ipa", "flash_ipa:sdpa", "flash_ipa:torch",
                                                          "flash_ipa:triton", "inattention:sdpa"],
                        help="variant[:backend]")
    parser.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", default=os.environ.get("OUT", "docs/benchmarks"))
    args = parser.parse_args(argv)

    device = torch.device("cuda")
    import triton

    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "python": platform.python_version(), "precision": args.precision, "model": ANCHOR,
            "warmup": args.warmup, "repeat": args.repeat}
    rows = []
    for point in args.points:
        length, batch_size = (int(x) for x in point.split("x"))
        for spec in args.variants:
            variant, _, backend = spec.partition(":")
            row = {"variant": variant, "backend": backend or "-", "length": length, "batch": batch_size}
            start = time.perf_counter()
            try:
                row.update(time_steps(variant, backend or "auto", batch_size, length, args.precision,
                                      args.warmup, args.repeat, ANCHOR, device))
                row["status"] = "ok"
            except torch.cuda.OutOfMemoryError:
                row["status"] = "out of memory"
            except Exception as error:  # a failure is a result; the sweep goes on
                row["status"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
            row["wall_s"] = time.perf_counter() - start
            rows.append(row)
            print(json.dumps(row), flush=True)
            write_tables(rows, meta, args.out)  # after every point: a later crash loses nothing
            torch.cuda.empty_cache()
    print(markdown(rows, meta))


def write_tables(rows, meta, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "train_step.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(os.path.join(out, "train_step.md"), "w") as f:
        f.write(markdown(rows, meta))


if __name__ == "__main__":
    main()
