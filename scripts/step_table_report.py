"""docs/benchmarks/train_step.{md,csv} from the folder that scripts/device_step_table.sh filled (before/,
after/, graphs/: scaling_results.jsonl each; syncs.txt; profile_*.txt; device.log), beside flash_ipa's own
step as reference, and docs/benchmarks/step_profile.md from the profiles (with `--op-counts`, the output of
scripts/count_step_ops.py).

    python scripts/step_table_report.py RESULTS_DIR --out docs/benchmarks/train_step --op-counts ops.txt
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from flashipa_train.scaling.results import read_rows

# flash_ipa's example model, its own step on the same H200 kind (issue 21, measured 2026-12-02, bf16 autocast)
FLASH_IPA_MS = {(256, 8): 141.7, (4096, 1): 168.0, (32768, 1): 1210.0}
FLASH_IPA_GIB = {(32768, 1): 16.7}
# what each point is, in table order
POINTS = [
    ("sdpa_256x8", "256 x 8, eager, sdpa"),
    ("triton_256x8", "256 x 8, eager, triton"),
    ("default_256x8", "256 x 8, eager, sdpa, default GPU run's callbacks (EMA, bar, lr, logs)"),
    ("graphs_256x8", "256 x 8, triton, compile=auto (CUDA graphs)"),
    ("sdpa_4096x1", "4096 x 1, eager, sdpa"),
    ("triton_4096x1", "4096 x 1, eager, triton"),
    ("sdpa_32768x1", "32768 x 1, eager, sdpa"),
    ("triton_32768x1", "32768 x 1, eager, triton"),
    ("auto_32768x1", "32768 x 1, eager, sdpa, checkpoint_blocks=auto"),
    ("sdpa_65536x1", "65536 x 1, eager, sdpa"),
    ("sdpa_131072x1", "131072 x 1, eager, sdpa, checkpoint_blocks=auto"),
]


def load(results: Path, before_csv: Path | None) -> dict[tuple[str, str], dict]:
    """(code, point) -> row, code being the subfolder (before, after, graphs -> after); with before_csv (the
    train_step.csv of an earlier device session), its *after* rows are the *before* ones."""
    rows = {}
    for code in ("before", "after", "graphs"):
        if (results / code / "scaling_results.jsonl").is_file():
            for row in read_rows(results / code):
                rows[("before" if code == "before" else "after", Path(row["run_dir"]).name)] = row
    if before_csv is not None:
        with open(before_csv, newline="") as f:
            for row in csv.DictReader(f):
                if row["code"] == "after" and row["status"] == "ok":
                    numbers = {k: float(row[k]) for k in ("step_ms_median", "peak_gib", "warmup_s")}
                    rows[("before", row["point"])] = {**row, **numbers}
    return rows


def _ms(row: dict | None) -> str:
    if row is None:
        return "not run"
    if row.get("status") != "ok":
        return row.get("status", "?")
    return f"{row['step_ms_median']:.1f}"


def _number(row: dict | None, key: str, fmt: str) -> str:
    value = (row or {}).get(key)
    return fmt.format(value) if isinstance(value, (int, float)) and not math.isnan(value) else "-"


def markdown(rows: dict, syncs: list[tuple[str, str]], stamp: str, before: str) -> str:
    lines = [
        "# Training step on the H200: before / after the sync-free step (issue 21)",
        "",
        f"{stamp}",
        "",
        "`experiment=scaling` points (synthetic chains, flash_ipa trunk as configured, bf16-mixed, fused AdamW, "
        "gradient clipping 1.0 in *after* (off in *before*), no EMA unless named), all from one device call "
        "by `scripts/device_step_table.sh`; median of the timed steps after the warm-up (CUDA events); "
        f"*before* = {before}, *after* = this code. flash_ipa = its own example model's step "
        "on the same GPU kind (issue 21's table, 2026-12-02). Ratio = flash_ipa / after.",
        "",
        "| point | flash_ipa ms | before ms | after ms | ratio | after peak GiB | warm-up s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, title in POINTS:
        before, after = rows.get(("before", name)), rows.get(("after", name))
        ref = None
        if after is not None:
            ref = FLASH_IPA_MS.get((after["length"], after.get("batch_size")))
        ratio = f"{ref / after['step_ms_median']:.2f}x" if ref and after and after.get("status") == "ok" else "-"
        peak, warm = _number(after, "peak_gib", "{:.2f}"), _number(after, "warmup_s", "{:.0f}")
        lines.append(f"| {title} | {ref if ref else '-'} | {_ms(before)} | {_ms(after)} | {ratio} | {peak} | {warm} |")
    for title, text in syncs:
        lines += [
            "",
            f'Host synchronisations, {title} (`torch.cuda.set_sync_debug_mode("warn")`, '
            "`flashipa_train/scaling/sync_probe.py`):",
            "",
            "```",
            text.strip() or "(not recorded)",
            "```",
        ]
    return "\n".join(lines) + "\n"


def profile_markdown(results: Path, op_counts: str, stamp: str, kernel_rows: int = 15) -> str:
    """The StepProfiler reports (summary, forward time per module, top kernels) and the ATen call counts."""
    lines = [
        "# Where a training step's time goes (issue 21)",
        "",
        stamp,
        "",
        "torch.profiler over a few eager steps of `experiment=scaling` points (flash_ipa, sdpa, bf16-mixed; "
        "`flashipa_train/scaling/step_profiler.py`, run by `scripts/device_step_table.sh`). GPU busy = union "
        "of the device's kernel and copy intervals; the rest of the wall time the GPU waits for the host.",
        "",
    ]
    for name in ("profile_256x8", "profile_32768x1"):
        path = results / "after" / f"{name}.txt"
        if not path.is_file():
            lines += [f"## {name}: not run", ""]
            continue
        text = path.read_text().split("\n")
        kernels = text.index("device kernels by total time (all profiled steps):")
        lines += [
            f"## {name.replace('profile_', '').replace('x', ' x ')}",
            "",
            "```",
            *text[: kernels + 2 + kernel_rows],
            "```",
            "",
        ]
    if op_counts:
        lines += [
            "## ATen calls per step, by part of the model (CPU count, `scripts/count_step_ops.py`)",
            "",
            "Each call that is not a view is about one kernel launch of an eager GPU step (plus the casts "
            "that bf16 autocast adds); views cost host time only.",
            "",
            "```",
            op_counts.strip(),
            "```",
            "",
        ]
    return "\n".join(lines)


def write_csv(rows: dict, path: Path) -> None:
    out = []
    for (code, name), row in sorted(rows.items()):
        out.append({"code": code, "point": name, **{k: v for k, v in row.items() if k != "run_dir"}})
    keys = ["code", "point"] + sorted({k for r in out for k in r} - {"code", "point"})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/train_step"))
    parser.add_argument("--profile-out", type=Path, default=Path("docs/benchmarks/step_profile.md"))
    parser.add_argument("--op-counts", type=Path, default=None, help="output of scripts/count_step_ops.py")
    parser.add_argument("--before-csv", type=Path, default=None, help="an earlier session's train_step.csv")
    parser.add_argument("--before", default="main's code, same session", help="what the before column is")
    parser.add_argument("--no-profile", action="store_true", help="leave --profile-out as it is")
    args = parser.parse_args()
    rows = load(args.results, args.before_csv)
    syncs = []
    for folder, title in (
        ("after", "steps 5-14 of the default-callbacks point (eager)"),
        ("graphs", "steps 8-11 of the CUDA-graph point"),
    ):
        path = args.results / folder / "syncs.txt"
        syncs.append((title, path.read_text() if path.is_file() else ""))
    stamp_file = args.results / "device.log"
    stamp = " ".join(stamp_file.read_text().strip().split("\n")[:3]) if stamp_file.is_file() else ""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown(rows, syncs, stamp, args.before))
    write_csv(rows, args.out.with_suffix(".csv"))
    op_counts = args.op_counts.read_text() if args.op_counts else ""
    if not args.no_profile:
        args.profile_out.write_text(profile_markdown(args.results, op_counts, stamp))
    print(
        f"wrote {args.out.with_suffix('.md')}, .csv ({len(rows)} rows)"
        + ("" if args.no_profile else f" and {args.profile_out}")
    )


if __name__ == "__main__":
    main()
