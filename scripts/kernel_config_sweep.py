"""Time each FlashIPA kernel under fixed configs on a CUDA GPU (one config per kernel per run), to choose
launch.py's candidate lists for a model's dims.

    python scripts/kernel_config_sweep.py --dims trunk --lengths 8192 32768 --out DIR \
        --sets "fwd=128,32,8,2 dk=32,128,8,2 dv=32,128,8,2 dq=128,32,8,2" "fwd=128,64,8,2 ..."

Each set runs in its own process (a config that faults or runs out of resources costs only its set):
the set's configs replace the kernels' candidates, one fwd+bwd compiles, then torch.profiler sums each
kernel's device time over --repeat fwd+bwd calls (bf16, batch 1, no padding). Writes DIR/sweep.json
(one row per set, length and kernel: ms per call, or the error) and prints a table; a kernel left out
of a set runs its first candidate (FLASHIPA_AUTOTUNE=0).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

KERNEL_NAMES = {
    "fwd": "_ipa_fwd_kernel",
    "dk": "_ipa_bwd_dk_kernel",
    "dv": "_ipa_bwd_dv_kernel",
    "dq": "_ipa_bwd_dq_kernel",
}


def run_set(spec, dims, lengths, repeat):
    """In this process: time the kernels under the configs of `spec` -> rows."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from flashipa_kernels.flash_ipa import flash_ipa_attention
    from flashipa_kernels.flash_ipa.benchmark import DIMS
    from flashipa_kernels.flash_ipa.testing import random_ipa_inputs

    sys.path.insert(0, str(Path(__file__).parent))
    from device_memcheck import use_configs

    use_configs(spec.split())
    rows = []
    for L in lengths:
        inputs = [x.requires_grad_() for x in random_ipa_inputs(1, L, DIMS[dims], torch.bfloat16, "cuda")]
        grads = None

        def step():
            nonlocal grads
            outs = flash_ipa_attention(*inputs)
            grads = grads or [torch.randn_like(o) for o in outs]
            torch.autograd.backward(outs, grads)

        step()  # compile
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(repeat):
                step()
            torch.cuda.synchronize()
        times = {k: 0.0 for k in KERNEL_NAMES}
        for event in prof.key_averages():
            for k, name in KERNEL_NAMES.items():
                if event.key.startswith(name):
                    times[k] += event.device_time_total / 1e3 / repeat  # us -> ms per call
        rows.append(dict(set=spec, length=L, **{k: round(v, 3) for k, v in times.items()}))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", default="trunk")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=int, default=90, help="seconds per set")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # child process: one set
    args = parser.parse_args()
    if args.one:
        run_set(args.sets[0], args.dims, args.lengths, args.repeat)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    env = dict(os.environ, FLASHIPA_AUTOTUNE="0")
    for spec in args.sets:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            "--dims",
            args.dims,
            "--repeat",
            str(args.repeat),
            "--out",
            str(args.out),
        ]
        cmd += ["--lengths", *map(str, args.lengths), "--sets", spec]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
            printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            error = None if done.returncode == 0 else done.stderr.strip().splitlines()[-1:] or ["rc"]
        except subprocess.TimeoutExpired:
            printed, error = [], ["timeout"]
        rows += printed
        if error:
            rows.append(dict(set=spec, error=error[0][:300]))
        for row in printed + rows[-1:] * bool(error):
            print(row, flush=True)
        (args.out / "sweep.json").write_text(json.dumps(dict(dims=args.dims, rows=rows), indent=1))


if __name__ == "__main__":
    main()
