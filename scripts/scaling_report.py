"""Turn a scaling sweep's folder into docs/scaling.md plus log-log PNGs (time per step, peak memory and
residues/s against L, one line per variant, fitted slopes), optionally with the maximum-length JSON of
scripts/find_max_length.py and a wandb summary run (a table of all points, log-log charts per variant and
the PNGs; docs/wandb.md). `flashipa-scaling -m experiment=scaling logger=wandb` makes that run by itself.

    python scripts/scaling_report.py logs/scaling/multiruns/<date_time> --max-length max_length.json
    python scripts/scaling_report.py logs/scaling/multiruns/<date_time> --wandb flashipa-scaling
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flashipa_train.scaling.report import write_report  # noqa: E402
from flashipa_train.scaling.results import read_rows  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="sweep folder (holding scaling_results.jsonl) or a .jsonl/.csv file")
    parser.add_argument("--out", default="docs/scaling.md", help="Markdown report")
    parser.add_argument("--figures-dir", default="docs/figures", help="folder of the PNGs")
    parser.add_argument("--max-length", help="JSON written by scripts/find_max_length.py")
    parser.add_argument("--fit-min-length", type=int, default=2048, help="fit slopes over L >= this")
    parser.add_argument(
        "--wandb",
        metavar="PROJECT",
        help="also make the summary run in this wandb project "
        "(offline without credentials; its folder goes under the sweep folder, or ./wandb for a file)",
    )
    parser.add_argument("--wandb-group", default="scaling-summary")
    args = parser.parse_args(argv)

    rows = read_rows(args.results)
    max_lengths = json.loads(Path(args.max_length).read_text()) if args.max_length else None
    written = write_report(
        rows, Path(args.out), Path(args.figures_dir), max_lengths, args.fit_min_length, source=str(args.results)
    )
    for name, path in written.items():
        print(f"{name}: {path}")
    if args.wandb:
        from flashipa_train.scaling.wandb_summary import log_scaling_summary

        results = Path(args.results)
        folder = results if results.is_dir() else Path.cwd()  # a sweep's folder keeps its summary run
        figures = {name: path for name, path in written.items() if name != "markdown"}
        run_dir = log_scaling_summary(
            rows,
            args.wandb,
            save_dir=folder,
            name=f"summary_{folder.name}",
            group=args.wandb_group,
            figures=figures,
            min_length=args.fit_min_length,
        )
        print(f"wandb summary run: {run_dir} (offline: wandb sync {run_dir})")


if __name__ == "__main__":
    main()
