"""Plot generated backbones: a grid of CA traces and metric histograms of the samples against a training set.

    python scripts/plot_samples.py SAMPLES_DIR [--training DIR] [--out DIR] [--max-traces 12]
                                   [--max-training N] [--per-sample] [--novelty]

SAMPLES_DIR holds structure files (PDB/mmCIF/BinaryCIF, optionally gzipped; every protein chain is one
sample), e.g. the `out` folder of flashipa-sample (its top-level PDB files; its cif/ copies are not read).
--training is a preprocessed directory (flashipa-preprocess output) or a folder of structure files.
Writes to --out (default SAMPLES_DIR/plots):
    ca_traces.png          CA traces, one 3D panel per sample (at most --max-traces, spread over the
                           samples in name order), coloured N- to C-terminus
    metric_histograms.png  each metric's distribution, samples vs training set, and Rg against length
    metrics.csv            the metric rows behind the plots, with a "set" column
    traces/<name>.png      one CA trace per sample (with --per-sample)
Needs matplotlib (not a dependency of flashipa_train: `pip install matplotlib`).
"""

import argparse
import csv
import sys
from pathlib import Path

import biotite.structure as struc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashipa_train.metrics import Backbone, expected_radius_of_gyration, iter_backbones, sample_metrics  # noqa: E402
from flashipa_train.metrics.training_set import metrics_of_training_set  # noqa: E402

# (column, axis label) of the histogram panels
HISTOGRAM_METRICS = (
    ("ca_ca_mean", "CA-CA distance mean (Å)"),
    ("ca_ca_std", "CA-CA distance std (Å)"),
    ("bond_dev_C-N+", "|C-N peptide bond - ideal| (Å)"),
    ("angle_dev_CA-C-N+", "|CA-C-N angle - ideal| (°)"),
    ("angle_dev_N-CA-C", "|N-CA-C angle - ideal| (°)"),
    ("clashes_per_100", "CA clashes per 100 residues"),
    ("rg_ratio", "Rg / (2.2 L^0.38)"),
    ("helix_fraction", "helix fraction (P-SEA)"),
    ("strand_fraction", "strand fraction (P-SEA)"),
    ("coil_fraction", "coil fraction (P-SEA)"),
    ("novelty_max_tm", "max TM-score to training set"),
)
SAMPLE_COLOUR = "tab:orange"
TRAINING_COLOUR = "tab:blue"


def draw_ca_trace(axis, backbone: Backbone, title: str) -> None:
    """CA trace on a 3D axis, segments coloured from blue (N-terminus) to red (C-terminus); breaks not bridged."""
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    ca = backbone.atoms[backbone.ca_mask, 1]  # [M, 3]
    # centred, largest spread along x (biotite needs three points)
    ca = struc.orient_principal_components(ca) if len(ca) >= 3 else ca - ca.mean(axis=0)
    index = np.flatnonzero(backbone.ca_mask)
    bonded = (backbone.bonded_to_next() & backbone.ca_mask[1:] & backbone.ca_mask[:-1])[index[:-1]]  # [M-1]
    bonded &= np.diff(index) == 1
    segments = np.stack([ca[:-1], ca[1:]], axis=1)[bonded]  # [S, 2, 3]
    colours = np.linspace(0.0, 1.0, max(len(ca) - 1, 1))[bonded]
    lines = Line3DCollection(segments, cmap="turbo", linewidths=1.3)
    lines.set_array(colours)
    axis.add_collection3d(lines)
    half = np.abs(ca).max() * 1.05 if len(ca) else 1.0
    for setter in (axis.set_xlim, axis.set_ylim, axis.set_zlim):
        setter(-half, half)
    axis.set_box_aspect((1, 1, 1), zoom=1.25)
    axis.view_init(elev=20, azim=-60)
    axis.set_axis_off()
    axis.set_title(title, fontsize=8)


def trace_title(row: dict) -> str:
    return (
        f"{row['name']}  L={row['length']}\n"
        f"Rg {row['radius_of_gyration']:.1f} Å  H {row['helix_fraction']:.2f}  E {row['strand_fraction']:.2f}"
    )


def plot_ca_traces(backbones: list[Backbone], rows: list[dict], path: Path, columns: int = 4) -> None:
    import matplotlib.pyplot as plt

    count = len(backbones)
    grid_rows = (count + columns - 1) // columns
    figure = plt.figure(figsize=(3.0 * columns, 3.2 * grid_rows))
    for k, (backbone, row) in enumerate(zip(backbones, rows)):
        draw_ca_trace(figure.add_subplot(grid_rows, columns, k + 1, projection="3d"), backbone, trace_title(row))
    figure.suptitle("CA traces (blue N-terminus to red C-terminus), principal-axes view", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_one_trace(backbone: Backbone, row: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(4, 4))
    draw_ca_trace(figure.add_subplot(projection="3d"), backbone, trace_title(row))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_metric_histograms(sample_rows: list[dict], training_rows: list[dict], path: Path) -> None:
    """One panel per metric present in the rows (samples vs training, density-normalised), plus Rg vs L."""
    import matplotlib.pyplot as plt

    metrics = [(key, label) for key, label in HISTOGRAM_METRICS if any(key in row for row in sample_rows)]
    panels = len(metrics) + 1
    columns = 4
    figure, axes = plt.subplots(
        (panels + columns - 1) // columns, columns, figsize=(4.0 * columns, 3.0 * ((panels + columns - 1) // columns))
    )
    axes = axes.reshape(-1)
    for axis, (key, label) in zip(axes, metrics):
        samples = finite_column(sample_rows, key)
        training = finite_column(training_rows, key)
        values = np.concatenate([samples, training])
        low, high = (values.min(), values.max()) if values.size else (0.0, 1.0)
        if high - low < 1e-9:  # one value everywhere (e.g. no clashes): a unit-wide bar around it
            low, high = low - 0.5, high + 0.5
        bins = np.linspace(low, high, 21)
        if training.size:
            axis.hist(
                training,
                bins=bins,
                density=True,
                alpha=0.5,
                color=TRAINING_COLOUR,
                label=f"training (n={training.size})",
            )
        axis.hist(
            samples,
            bins=bins,
            density=True,
            alpha=0.6,
            color=SAMPLE_COLOUR,
            histtype="stepfilled",
            label=f"samples (n={samples.size})",
        )
        axis.set_xlabel(label, fontsize=9)
        axis.set_yticks([])
    rg_axis = axes[len(metrics)]
    plot_rg_against_length(rg_axis, sample_rows, training_rows)
    handles, labels = rg_axis.get_legend_handles_labels()
    for axis in axes[len(metrics) + 1 :]:
        axis.axis("off")
    figure.legend(handles, labels, loc="upper right", fontsize=9)
    figure.suptitle("Sample metrics vs training set (densities)", fontsize=11, x=0.02, ha="left")
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_rg_against_length(axis, sample_rows: list[dict], training_rows: list[dict]) -> None:
    for rows, colour, name in ((training_rows, TRAINING_COLOUR, "training"), (sample_rows, SAMPLE_COLOUR, "samples")):
        if rows:
            axis.scatter(
                [r["length"] for r in rows],
                [r["radius_of_gyration"] for r in rows],
                s=10,
                color=colour,
                alpha=0.7,
                label=name,
            )
    lengths = [r["length"] for r in sample_rows + training_rows]
    grid = np.linspace(max(min(lengths), 1), max(lengths), 100)
    axis.plot(grid, [expected_radius_of_gyration(n) for n in grid], "k--", linewidth=1, label="2.2 L^0.38")
    axis.set_xlabel("length (residues)", fontsize=9)
    axis.set_ylabel("Rg (Å)", fontsize=9)


def finite_column(rows: list[dict], key: str) -> np.ndarray:
    values = np.array([row.get(key, np.nan) for row in rows], dtype=np.float64)
    return values[np.isfinite(values)]


def spread_indices(count: int, limit: int) -> list[int]:
    """At most `limit` indices spread evenly over range(count), so the trace grid covers every sampled length."""
    if count <= limit:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, limit)})


def write_metrics_csv(sample_rows: list[dict], training_rows: list[dict], path: Path) -> None:
    rows = [{"set": "samples", **r} for r in sample_rows] + [{"set": "training", **r} for r in training_rows]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", help="folder of sample structure files (or one file)")
    parser.add_argument("--training", help="preprocessed directory or folder of training structure files")
    parser.add_argument("--out", help="output folder (default SAMPLES/plots)")
    parser.add_argument("--max-samples", type=int, default=None, help="read at most this many sample chains")
    parser.add_argument("--max-traces", type=int, default=12, help="panels in ca_traces.png")
    parser.add_argument("--max-training", type=int, default=None, help="read at most this many training chains")
    parser.add_argument("--per-sample", action="store_true", help="also write traces/<name>.png per sample")
    parser.add_argument(
        "--novelty", action="store_true", help="max TM-score of every sample to the training set (slow: all pairs)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        sys.exit("plot_samples.py needs matplotlib: pip install matplotlib")
    out = Path(args.out) if args.out else Path(args.samples) / "plots"
    out.mkdir(parents=True, exist_ok=True)

    backbones = list(iter_backbones(args.samples, args.max_samples))
    if not backbones:
        sys.exit(f"no protein chains found in {args.samples}")
    reference = iter_backbones(args.training, args.max_training) if (args.training and args.novelty) else None
    sample_rows = sample_metrics(backbones, reference_set=reference)
    training_rows = metrics_of_training_set(args.training, args.max_training) if args.training else []

    shown = spread_indices(len(backbones), args.max_traces)
    plot_ca_traces([backbones[i] for i in shown], [sample_rows[i] for i in shown], out / "ca_traces.png")
    plot_metric_histograms(sample_rows, training_rows, out / "metric_histograms.png")
    write_metrics_csv(sample_rows, training_rows, out / "metrics.csv")
    if args.per_sample:
        (out / "traces").mkdir(exist_ok=True)
        for backbone, row in zip(backbones, sample_rows):
            plot_one_trace(backbone, row, out / "traces" / f"{row['name']}.png")
    print(
        f"wrote {out / 'ca_traces.png'}, {out / 'metric_histograms.png'}, {out / 'metrics.csv'}"
        f" ({len(sample_rows)} samples, {len(training_rows)} training chains)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
