"""The longest chain that trains per attention variant, by doubling then bisection over L; every probe is
its own `flashipa-train experiment=scaling` process (one warm-up and one timed step), so an out-of-memory
error or a crashed kernel does not poison the next probe. Writes a JSON for scripts/scaling_report.py.

    python scripts/find_max_length.py --variants flash_ipa:sdpa inattention:sdpa dense_ipa \
        --start 16384 --limit 262144 --resolution 4096 --out max_length.json
Extra arguments after `--` are Hydra overrides for every probe (e.g. -- experiment=scaling_smoke).
"""

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flashipa_train.model import variant_backend  # noqa: E402
from flashipa_train.scaling.max_length import search_max_length, subprocess_probe, write_json  # noqa: E402
from flashipa_train.train.run_facts import variant_label  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants", nargs="+", default=["flash_ipa:sdpa", "inattention:sdpa", "dense_ipa"], help="variant[:backend]"
    )
    parser.add_argument("--start", type=int, default=16384, help="first L probed")
    parser.add_argument("--limit", type=int, default=262144, help="largest L probed")
    parser.add_argument("--resolution", type=int, default=4096, help="bisection stops at this gap")
    parser.add_argument("--probe-timeout", type=float, default=240.0, help="seconds per probe")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all variants together")
    parser.add_argument("--work-dir", default="logs/max_length", help="probe run folders")
    parser.add_argument("--out", default="logs/max_length/max_length.json")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every probe (after --)")
    args = parser.parse_args(argv)

    start_time = time.monotonic()
    found = {
        "start": args.start,
        "limit": args.limit,
        "resolution": args.resolution,
        "overrides": args.overrides,
        "python": platform.python_version(),
        "variants": {},
    }
    for i, spec in enumerate(args.variants):
        variant, _, backend = spec.partition(":")
        backend = backend or variant_backend({"name": variant})
        label = variant_label(variant, backend)
        deadline = None
        if args.budget is not None:  # an equal share of what is left for each remaining variant
            left = args.budget - (time.monotonic() - start_time)
            deadline = time.monotonic() + left / (len(args.variants) - i)
        probe = subprocess_probe(
            # the group, not an inline dict (which would merge into the experiment's flash_ipa node)
            [f"model/attention={variant}", f"model.attention.backend={backend}", *args.overrides],
            Path(args.work_dir) / label.replace("/", "-"),
            args.probe_timeout,
        )
        found["variants"][label] = search_max_length(probe, args.start, args.limit, args.resolution, deadline)
        result = found["variants"][label]
        print(
            f"{label}: longest L that trained {result['max_ok_length']}, shortest that failed "
            f"{result['min_failed_length']} ({result['failure']}); {len(result['probes'])} probes",
            flush=True,
        )
        write_json(found, args.out)  # after every variant: a later crash loses nothing
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
