"""Scores the output of scripts/device_sample_quality.sh (needs biotite) and writes the sample-quality tables.

    python scripts/sample_quality_report.py RESULTS [--training-set .device_cache/structures] [--out docs/benchmarks]
RESULTS holds <variant>/samples.pt and train_metrics.csv, memorise_<variant>/ and rot_rate_<r>/samples.pt.
Writes OUT/sample_quality.{json,md,png} (per variant: steps, val loss, ca_ca_mean, ca_ca_std, clashes_per_100,
helix, strand, rg_ratio, diversity (mean pairwise TM, lower = more diverse), novelty (mean max TM to the
training set, lower = more novel); and the rows training_set (every chain in data/, as
`flashipa-sample training_set=data` scores it) and training_examples (the preprocessed chains trained on)),
OUT/memorisation.json and OUT/rot_rate_sweep.json.
"""

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

from flashipa_train.metrics import as_backbone, iter_backbones, metrics_of_training_set, summarize
from flashipa_train.metrics.sample_metrics import sample_metrics
from flashipa_train.metrics.tm_score import pairwise_tm_diversity
from flashipa_train.sampling.outputs import load_samples

COLUMNS = (
    "steps",
    "val_loss",
    "val_loss_equal_step",
    "ca_ca_mean",
    "ca_ca_std",
    "clashes_per_100",
    "helix",
    "strand",
    "rg_ratio",
    "diversity",
    "novelty",
)


def training_log(path: Path) -> dict:
    """Last optimizer step, last validation loss and every validation loss by step of a Lightning CSV log."""
    steps, val_loss, by_step = 0, math.nan, {}
    if path.exists():
        with open(path) as f:
            for row in csv.DictReader(f):
                steps = max(steps, int(row["step"]))
                if row.get("val/loss"):
                    val_loss = by_step[int(row["step"])] = float(row["val/loss"])
    return {"steps": steps, "val_loss": val_loss, "val_loss_by_step": by_step}


def add_equal_step_loss(rows: dict) -> int | None:
    """The variants train at different speeds for the same time: give every row the validation loss at the
    last step all of them validated at (`val_loss_equal_step`); returns that step."""
    common = set.intersection(*(set(r["val_loss_by_step"]) for r in rows.values())) if rows else set()
    step = max(common) if common else None
    for r in rows.values():
        r["val_loss_equal_step"] = r["val_loss_by_step"][step] if step is not None else math.nan
    return step


def score_samples(path: Path, training_set, novelty: bool) -> dict:
    backbones = load_samples(path)
    arrays = [as_backbone(b.atoms) for b in backbones]
    rows = sample_metrics(arrays, reference_set=iter_backbones(training_set) if novelty else None)
    summary = summarize(rows)
    lengths = sorted({b.length for b in backbones})
    diversity = [pairwise_tm_diversity([a for a, b in zip(arrays, backbones) if b.length == L]) for L in lengths]
    return {
        "ca_ca_mean": summary["ca_ca_mean"],
        "ca_ca_std": summary["ca_ca_std"],
        "clashes_per_100": summary["clashes_per_100"],
        "helix": summary["helix_fraction"],
        "strand": summary["strand_fraction"],
        "rg_ratio": summary["rg_ratio"],
        "diversity": float(np.nanmean(diversity)),
        "novelty": summary.get("novelty_max_tm", math.nan) if novelty else math.nan,
        "num_samples": len(backbones),
    }


def training_row(source) -> dict:
    """The training chains' row, computed like the samples' (no steps, loss, diversity or novelty)."""
    training = summarize(metrics_of_training_set(source))
    return {
        "steps": math.nan,
        "val_loss": math.nan,
        "val_loss_equal_step": math.nan,
        "ca_ca_mean": training["ca_ca_mean"],
        "ca_ca_std": training["ca_ca_std"],
        "clashes_per_100": training["clashes_per_100"],
        "helix": training["helix_fraction"],
        "strand": training["strand_fraction"],
        "rg_ratio": training["rg_ratio"],
        "diversity": math.nan,
        "novelty": math.nan,
        "num_chains": training["count"],
    }


def fmt(value, digits=2):
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def plot(rows: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    panels = [
        ("helix", "helix fraction"),
        ("strand", "strand fraction"),
        ("clashes_per_100", "CA clashes / 100 res"),
        ("ca_ca_mean", "CA-CA (A)"),
        ("rg_ratio", "Rg ratio"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    for ax, (key, label) in zip(axes, panels):
        values = [rows[n].get(key, math.nan) for n in names]
        colours = ["grey" if n.startswith("training") else "tab:blue" for n in names]
        ax.bar(range(len(names)), values, color=colours)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results")
    parser.add_argument(
        "--training-set",
        default=".device_cache/structures",
        help="the preprocessed examples trained on (row training_examples; novelty against these)",
    )
    parser.add_argument(
        "--structure-files", default="data", help="every chain of the structure files (row training_set)"
    )
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--no-novelty", action="store_true")
    args = parser.parse_args()
    results, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = {}
    for folder in sorted(p for p in results.iterdir() if (p / "samples.pt").exists() and (p / "train.log").exists()):
        rows[folder.name] = {
            **training_log(folder / "train_metrics.csv"),
            **score_samples(folder / "samples.pt", args.training_set, not args.no_novelty),
        }
        print(folder.name, json.dumps(rows[folder.name]), flush=True)
    equal_step = add_equal_step_loss(rows)
    for name, source in (("training_set", args.structure_files), ("training_examples", args.training_set)):
        rows[name] = training_row(source)
    sweep = {}
    for folder in sorted(results.glob("rot_rate_*"), key=lambda p: float(p.name.split("_")[-1])):
        sweep[folder.name.split("_")[-1]] = score_samples(folder / "samples.pt", args.training_set, False)
    stamp = (results / "stamp.txt").read_text() if (results / "stamp.txt").exists() else ""
    record = {
        "device_stamp": stamp,
        "equal_step": equal_step,
        "variants": rows,
        "rot_exp_rate_sweep_flash_ipa_len100": sweep,
    }
    (out / "sample_quality.json").write_text(json.dumps(record, indent=1, default=float) + "\n")

    lines = [
        "# Sample quality after a fixed GPU training time",
        "",
        "Written by `scripts/sample_quality_report.py` from `scripts/device_sample_quality.sh`'s output. "
        "Samples: lengths 64/100/200, n = 8 each, 100 Euler steps, EMA weights. diversity: mean pairwise "
        "TM-score within a length (lower = more diverse); novelty: mean max TM-score to the training set "
        f"(lower = more novel). val_loss_equal_step: validation loss (EMA weights) at step {equal_step or '-'}, the "
        "last step every variant reached a validation at.",
        "",
        "```",
        stamp.strip(),
        "```",
        "",
        "| variant | " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | "
            + " | ".join(
                fmt(row.get(c, math.nan), 0 if c == "steps" else 3 if c.startswith("val_loss") else 2) for c in COLUMNS
            )
            + " |"
        )
    if sweep:
        lines += [
            "",
            "Sampler's exp rotation rate, flash_ipa model above, length 100, n = 8:",
            "",
            "| rot_exp_rate | helix | strand | clashes_per_100 | ca_ca_mean | rg_ratio |",
            "|---|---|---|---|---|---|",
        ]
        for rate, row in sweep.items():
            lines.append(
                f"| {rate} | "
                + " | ".join(fmt(row[c]) for c in ("helix", "strand", "clashes_per_100", "ca_ca_mean", "rg_ratio"))
                + " |"
            )
    memorise = sorted(str(p) for p in results.glob("memorise_*") if (p / "samples.pt").exists())
    if memorise:
        subprocess.run(
            [sys.executable, "scripts/memorise_chain.py", "score", *memorise, "--json", str(out / "memorisation.json")],
            check=True,
        )
        mem_rows = json.loads((out / "memorisation.json").read_text())
        lines += [
            "",
            "Memorisation of one chain (scripts/memorise_chain.py; pass: TM >= 0.8 and helix within 0.1):",
            "",
            "| variant | chain | steps | TM mean | TM min | helix | chain's helix | passes |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in mem_rows:
            lines.append(
                f"| {r['variant']} | {r['example']} | {r['steps']} | {r['tm_mean']:.2f} | {r['tm_min']:.2f} | "
                f"{r['helix_mean']:.2f} | {r['helix_reference']:.2f} | {r['passes']} |"
            )
    lines += ["", "![sample quality](sample_quality.png)", ""]
    (out / "sample_quality.md").write_text("\n".join(lines))
    plot(rows, out / "sample_quality.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
