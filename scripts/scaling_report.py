"""Turn a scaling sweep's folder into docs/scaling.md plus log-log PNGs (time per step, peak memory and
residues/s against L, one line per variant, fitted slopes), optionally with the maximum-length JSON of
scripts/find_max_length.py and a wandb summary (one run per variant, L as the x-axis, and a table).

    python scripts/scaling_report.py logs/scaling/multiruns/<date_time> --max-length max_length.json
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flashipa_train.scaling.report import rows_by_label, write_report  # noqa: E402
from flashipa_train.scaling.results import read_rows  # noqa: E402


def log_to_wandb(rows: list[dict], project: str, group: str) -> None:
    """One wandb run per variant in `group`, logging scaling/* against scaling/length, plus the whole table
    (offline without credentials: upload with `wandb sync`)."""
    import wandb

    from flashipa_train.train.wandb_logger import wandb_credentials_present

    mode = "online" if wandb_credentials_present() else "offline"
    columns = sorted({k for row in rows for k in row})
    for label, group_rows in rows_by_label(rows).items():
        run = wandb.init(project=project, group=group, name=f"{group}-{label}", job_type="scaling-summary",
                         mode=mode, config={"variant": label}, reinit=True)
        run.define_metric("scaling/length")
        run.define_metric("scaling/*", step_metric="scaling/length")
        for row in group_rows:
            if row.get("status") == "ok":
                run.log({f"scaling/{k}": row[k] for k in ("step_ms", "residues_per_s", "peak_gib", "loss")
                         if row.get(k) is not None} | {"scaling/length": row["length"]})
        run.log({"scaling/table": wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])})
        run.finish()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="sweep folder (holding scaling_results.jsonl) or a .jsonl/.csv file")
    parser.add_argument("--out", default="docs/scaling.md", help="Markdown report")
    parser.add_argument("--figures-dir", default="docs/figures", help="folder of the PNGs")
    parser.add_argument("--max-length", help="JSON written by scripts/find_max_length.py")
    parser.add_argument("--fit-min-length", type=int, default=2048, help="fit slopes over L >= this")
    parser.add_argument("--wandb", metavar="PROJECT", help="also log a per-variant summary to this wandb project")
    parser.add_argument("--wandb-group", default="scaling-summary")
    args = parser.parse_args(argv)

    rows = read_rows(args.results)
    max_lengths = json.loads(Path(args.max_length).read_text()) if args.max_length else None
    written = write_report(rows, Path(args.out), Path(args.figures_dir), max_lengths, args.fit_min_length,
                           source=str(args.results))
    for name, path in written.items():
        print(f"{name}: {path}")
    if args.wandb:
        log_to_wandb(rows, args.wandb, args.wandb_group)


if __name__ == "__main__":
    main()
