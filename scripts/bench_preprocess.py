"""Benchmark flashipa-preprocess: structures/s with 1 and 2 worker processes (goal: >= 20 per core).

    python scripts/bench_preprocess.py [INPUT ...] [--workers 1 2] [--repeats 2] [--out docs/benchmarks]

Each measurement preprocesses INPUT (default ../shared/pdb) into a fresh temporary directory; the
best of --repeats runs is kept. "per CPU-second" divides by the CPU time spent (all processes),
which is the per-core rate even on a shared, busy machine. Prints a Markdown table and, with --out, writes
preprocess.json and preprocess.md there, stamped with the CPU count and library versions.
"""

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import biotite
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashipa_train.data.preprocess import find_structure_files, preprocess  # noqa: E402

DEFAULT_INPUT = Path(__file__).resolve().parents[1].parent / "shared" / "pdb"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker pool), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(inputs: list[str], workers: int, repeats: int) -> dict:
    best = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            start, cpu_start = time.perf_counter(), cpu_seconds()
            summary = preprocess(inputs, out, workers=workers, progress=False)
            wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
        if best is None or wall < best["wall_s"]:
            best = {
                "workers": workers,
                "files": summary.files_in,
                "chains_accepted": summary.chains_accepted,
                "rejections_by_reason": dict(summary.rejections_by_reason),
                "wall_s": round(wall, 3),
                "structures_per_s": round(summary.files_in / wall, 2),
                "structures_per_s_per_worker": round(summary.files_in / wall / workers, 2),
                "cpu_s": round(cpu, 3),
                "structures_per_cpu_s": round(summary.files_in / cpu, 2),
            }
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", default=[str(DEFAULT_INPUT)])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="folder for preprocess.json and preprocess.md")
    args = parser.parse_args()
    if not find_structure_files(args.inputs):
        print(f"no structure files under {args.inputs}", file=sys.stderr)
        return 2
    results = [measure(args.inputs, w, args.repeats) for w in args.workers]
    stamp = {
        "inputs": args.inputs,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "biotite": biotite.__version__,
        "numpy": np.__version__,
        "load_average_1min": os.getloadavg()[0],
    }
    lines = [
        "| workers | files | chains accepted | wall (s) | structures/s | per worker | per CPU-second |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['workers']} | {r['files']} | {r['chains_accepted']} | {r['wall_s']} | "
            f"{r['structures_per_s']} | {r['structures_per_s_per_worker']} | {r['structures_per_cpu_s']} |"
            for r in results
        ),
    ]
    table = "\n".join(lines)
    print(table)
    print("rejections by reason:", results[0]["rejections_by_reason"])
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        Path(args.out, "preprocess.json").write_text(json.dumps({"stamp": stamp, "results": results}, indent=2))
        Path(args.out, "preprocess.md").write_text(
            f"# flashipa-preprocess throughput\n\n{json.dumps(stamp)}\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
