"""The longest chain that trains, per variant: doubling then bisection over L, each probe a separate
`flashipa-scaling experiment=scaling` process (an out-of-memory error or a crashed kernel cannot poison the
next probe's CUDA context), each probe a short timed run whose row says ok or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from flashipa_train.scaling.results import read_rows

ROOT = Path(__file__).resolve().parents[2]


def search_max_length(
    probe: Callable[[int], tuple[bool, str]], start: int, limit: int, resolution: int, deadline: float | None = None
) -> dict:
    """Largest L in [1, limit] (a multiple of `resolution`, or `start`) for which `probe(L)` succeeds, assuming
    success is monotone in L: double from `start` until a failure or `limit`, then bisect down to
    `resolution`. Stops early at `deadline` (time.monotonic()). Returns {max_ok_length, min_failed_length,
    failure, probes: [{length, ok, status}], complete}."""
    probes = []

    def run(length: int) -> bool:
        ok, status = probe(length)
        probes.append({"length": length, "ok": ok, "status": status})
        return ok

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    ok_length, failed_length = None, None
    length = start
    while not out_of_time():
        if run(length):
            ok_length = length
            if length >= limit:
                break
            length = min(2 * length, limit)
        else:
            failed_length = length
            break
    if ok_length is None and failed_length is not None:
        ok_length_floor = 0  # even `start` failed: bisect below it
    else:
        ok_length_floor = ok_length
    while failed_length is not None and ok_length_floor is not None and not out_of_time():
        middle = (ok_length_floor + failed_length) // 2 // resolution * resolution
        if middle <= ok_length_floor or failed_length - ok_length_floor <= resolution:
            break
        if run(middle):
            ok_length = ok_length_floor = middle
        else:
            failed_length = middle
    failure = next((p["status"] for p in probes if p["length"] == failed_length and not p["ok"]), None)
    complete = (
        failed_length is None
        and ok_length == limit
        or (failed_length is not None and (failed_length - (ok_length or 0)) <= resolution)
    )
    return {
        "max_ok_length": ok_length,
        "min_failed_length": failed_length,
        "failure": failure,
        "probes": probes,
        "complete": bool(complete),
    }


def subprocess_probe(
    overrides: list[str], work_dir: Path, timeout_s: float, env: dict | None = None, command: list[str] | None = None
) -> Callable[[int], tuple[bool, str]]:
    """A probe that runs `flashipa-scaling experiment=scaling <overrides> data.length=L` in its own process
    (`experiment=scaling` left out when the overrides name an experiment) and reads back its row (status
    `crashed` when the process died without writing one)."""
    experiment = [] if any(o.startswith("experiment=") for o in overrides) else ["experiment=scaling"]
    command = (command or [sys.executable, "-m", "flashipa_train.scaling.cli"]) + experiment

    def probe(length: int) -> tuple[bool, str]:
        results = Path(work_dir) / f"L{length}"
        args = (
            command
            + list(overrides)
            + [
                f"data.length={length}",
                f"scaling.results_dir={results}",
                f"hydra.run.dir={results}/run",
                "scaling.warmup_steps=1",
                "scaling.timed_steps=1",
            ]
        )
        process_env = dict(os.environ, **(env or {}))
        process_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), process_env.get("PYTHONPATH")]))
        try:
            done = subprocess.run(args, cwd=ROOT, env=process_env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout_s:.0f} s"
        try:
            rows = read_rows(results)
        except FileNotFoundError:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            return False, f"crashed (exit {done.returncode}): {tail[0][:200]}"
        row = rows[-1]
        return row["status"] == "ok", row["status"]

    return probe


def write_json(found: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found, indent=1))
    return path
