"""Training-step points of the step table, several in one process (imports and CUDA start paid once): each is
an experiment=scaling run (synthetic chains, StepTimer: median of timed steps after warm-up) whose row goes to
OUT/scaling_results.{jsonl,csv}. Points are skipped once the deadline (seconds since the epoch) is near.

    python scripts/step_table.py OUT --deadline $(( $(date +%s) + 120 )) sdpa_256x8 triton_256x8 ...
    # CPU dry run: python scripts/step_table.py /tmp/t --smoke sdpa_256x8 default_256x8 profile_256x8

Points (flash_ipa; eager unless named graphs): sdpa_256x8, triton_256x8, sdpa_4096x1, triton_4096x1,
sdpa_32768x1, triton_32768x1, auto_32768x1 (sdpa, model.checkpoint_blocks=auto), sdpa_65536x1,
sdpa_131072x1 (checkpoint_blocks=auto),
default_256x8 (sdpa with the default GPU run's callbacks: EMA, progress bar, lr monitor, CSV logging every 10
steps, the guard's flags read every 100 steps; SyncProbe names the host synchronisations of steps 5-14),
profile_256x8 (sdpa, StepProfiler over steps 8-10), profile_32768x1 (steps 2-3), graphs_256x8 (triton,
compile=auto: CUDA graphs; SyncProbe over steps 8-11).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from flashipa_train.config import compose_train_config
from flashipa_train.scaling.sweep_point import run_scaling_point
from flashipa_train.train.cli import train

SDPA = "model.attention={name:flash_ipa,backend:sdpa}"
TRITON = "model.attention={name:flash_ipa,backend:triton}"
SHORT = ["data.length=256", "scaling.warmup_steps=12", "scaling.timed_steps=30"]
LONG = ["scaling.warmup_steps=2", "scaling.timed_steps=3"]
DEFAULT_CALLBACKS = [
    "+callbacks.ema={_target_:flashipa_train.train.ema.EMA,decay:0.999}",
    "+callbacks.progress_bar={_target_:flashipa_train.train.progress_bar.StepProgressBar,refresh_rate:10}",
    "+callbacks.lr_monitor={_target_:pytorch_lightning.callbacks.LearningRateMonitor,logging_interval:step}",
    "callbacks.nonfinite_guard.check_every_n_steps=100",
    "trainer.log_every_n_steps=10",
    "trainer.enable_progress_bar=true",
    "optimizer.fused=auto",
    "scaling.warmup_steps=20",
]
POINTS = {
    "sdpa_256x8": [SDPA, *SHORT],
    "triton_256x8": [TRITON, *SHORT],
    "sdpa_4096x1": [SDPA, "data.length=4096", "scaling.warmup_steps=5", "scaling.timed_steps=15"],
    "sdpa_32768x1": [SDPA, "data.length=32768", "scaling.warmup_steps=2", "scaling.timed_steps=5"],
    "triton_4096x1": [TRITON, "data.length=4096", "scaling.warmup_steps=5", "scaling.timed_steps=15"],
    "triton_32768x1": [TRITON, "data.length=32768", "scaling.warmup_steps=2", "scaling.timed_steps=5"],
    "auto_32768x1": [SDPA, "data.length=32768", "model.checkpoint_blocks=auto", *LONG],
    "sdpa_65536x1": [SDPA, "data.length=65536", *LONG],
    "sdpa_131072x1": [SDPA, "data.length=131072", "model.checkpoint_blocks=auto", *LONG],
    "default_256x8": [
        SDPA,
        *SHORT,
        *DEFAULT_CALLBACKS,
        "+callbacks.sync_probe={_target_:"
        "flashipa_train.scaling.sync_probe.SyncProbe,start_step:5,num_steps:10,out_file:OUT/syncs.txt}",
    ],
    "profile_256x8": [
        SDPA,
        "data.length=256",
        "scaling.warmup_steps=8",
        "scaling.timed_steps=3",
        "+callbacks.step_profiler={_target_:flashipa_train.scaling.step_profiler.StepProfiler,"
        "start_step:8,num_steps:3,out_file:OUT/profile_256x8.txt}",
    ],
    "profile_32768x1": [
        SDPA,
        "data.length=32768",
        "scaling.warmup_steps=2",
        "scaling.timed_steps=2",
        "+callbacks.step_profiler={_target_:flashipa_train.scaling.step_profiler.StepProfiler,"
        "start_step:2,num_steps:2,out_file:OUT/profile_32768x1.txt}",
    ],
    "graphs_256x8": [
        TRITON,
        *SHORT,
        "compile=auto",
        "+callbacks.sync_probe={_target_:"
        "flashipa_train.scaling.sync_probe.SyncProbe,start_step:8,num_steps:4,out_file:OUT/syncs.txt}",
    ],
}
# seconds a point needs at least (cold start of its kernels included); later points are skipped when less is left
NEEDS_S = {
    "sdpa_32768x1": 25,
    "triton_32768x1": 30,
    "auto_32768x1": 30,
    "profile_32768x1": 30,
    "sdpa_65536x1": 40,
    "sdpa_131072x1": 80,
    "triton_256x8": 25,
    "graphs_256x8": 120,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("points", nargs="+", choices=sorted(POINTS))
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds since the epoch")
    parser.add_argument("--smoke", action="store_true", help="experiment=scaling_smoke at toy lengths (CPU)")
    parser.add_argument("--tag", default="", help="a column naming the code measured (before / after)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.points:
        left = args.deadline - time.time()
        if left < NEEDS_S.get(name, 15):
            print(f"step_table: {name} skipped ({left:.0f} s left)", flush=True)
            continue
        overrides = [o.replace("OUT/", f"{args.out}/") for o in POINTS[name]]
        if args.smoke:
            overrides = [
                o.replace("data.length=256", "data.length=16")
                .replace("data.length=4096", "data.length=32")
                .replace("data.length=32768", "data.length=64")
                .replace("data.length=65536", "data.length=64")
                .replace("data.length=131072", "data.length=64")
                for o in overrides
            ]
        experiment = "experiment=scaling_smoke" if args.smoke else "experiment=scaling"
        cfg = compose_train_config(
            [experiment, f"scaling.results_dir={args.out}", *overrides], output_dir=args.out / "runs" / name
        )
        start = time.time()
        row = run_scaling_point(cfg, train)
        print(
            f"step_table: {args.tag} {name}: {row['status']}, median {row.get('step_ms_median', float('nan')):.1f} ms, "
            f"warm-up {row.get('warmup_s', float('nan')):.1f} s, peak {row.get('peak_gib', float('nan')):.2f} GiB, "
            f"wall {time.time() - start:.0f} s",
            flush=True,
        )
        if row.get("compile", "off") != "off":  # where the compile time went (dynamo, AOT autograd, inductor)
            import torch._dynamo.utils

            print(torch._dynamo.utils.compile_times(repr="str"), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
