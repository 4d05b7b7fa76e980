"""Turn a scaling sweep's results into docs/scaling.md and log-log plots (time per step, peak memory,
residues/s against L, one line per variant, with the fitted power-law slope of each line)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from flashipa_train.train.run_facts import variant_label

# flash_ipa's example model on an H100 80GB, one fwd+bwd training step (issue 8):
# L -> (batch, dense IPA fp32 (ms, GiB), FlashIPA bf16 (ms, GiB)); None: out of memory or not measured
ANCHOR = {
    128: (16, (205, 12.8), (214, 1.2)),
    256: (8, (331, 24.9), (203, 1.2)),
    512: (4, (556, 49.0), (179, 1.2)),
    1024: (2, None, (162, None)),
    4096: (1, None, (153, 2.2)),
    8192: (1, None, (271, 4.4)),
    16384: (1, None, (761, 8.7)),
    32768: (1, None, (2627, 17.3)),
}
PLOTS = (
    ("step_ms", "time per training step (ms)", "scaling_step_time.png"),
    ("peak_gib", "peak GPU memory (GiB)", "scaling_peak_memory.png"),
    ("residues_per_s", "residues per second", "scaling_throughput.png"),
)


def _ok(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def rows_by_label(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by variant label (`flash_ipa/sdpa`), each group sorted by length."""
    groups = defaultdict(list)
    for row in rows:
        groups[row.get("label") or variant_label(row["variant"], row["backend"])].append(row)
    return {label: sorted(group, key=lambda r: int(r["length"])) for label, group in sorted(groups.items())}


def fitted_slope(rows: list[dict], metric: str, min_length: int) -> tuple[float, int, int] | None:
    """Least-squares slope of log(metric) against log(L) over the successful rows with L >= min_length
    (over all successful rows when fewer than two qualify). Returns (slope, first L, last L) or None."""
    points = [
        (int(r["length"]), float(r[metric]))
        for r in rows
        if r.get("status") == "ok" and _ok(r.get(metric)) and float(r[metric]) > 0
    ]
    long_points = [p for p in points if p[0] >= min_length]
    points = long_points if len(long_points) >= 2 else points
    if len(points) < 2 or len({p[0] for p in points}) < 2:
        return None
    lengths, values = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(lengths, values, 1)[0]), points[0][0], points[-1][0]


def plot_metric(groups: dict[str, list[dict]], metric: str, ylabel: str, path: Path, min_length: int) -> bool:
    """One log-log line per variant of `metric` against L, slopes in the legend; False when no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawn = False
    for label, rows in groups.items():
        ok = [r for r in rows if r.get("status") == "ok" and _ok(r.get(metric))]
        if not ok:
            continue
        slope = fitted_slope(rows, metric, min_length)
        name = label + (f" (slope {slope[0]:.2f})" if slope else "")
        ax.plot([int(r["length"]) for r in ok], [float(r[metric]) for r in ok], marker="o", label=name)
        failed = [r for r in rows if r.get("status") != "ok"]
        if failed:  # the first failing length, drawn at the top of the axis as an x
            ax.plot([int(failed[0]["length"])], [max(float(r[metric]) for r in ok)], marker="x", color="grey")
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length L (residues)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _fmt(value, spec: str) -> str:
    return format(float(value), spec) if _ok(value) else ""


def markdown(rows: list[dict], figures: dict[str, str], max_lengths: dict | None, min_length: int, source: str) -> str:
    """The report's text: results per variant, fitted slopes, the anchor's figures, maximum lengths."""
    groups = rows_by_label(rows)
    first = rows[0] if rows else {}
    lines = [
        "# Sequence-length scaling",
        "",
        f"One sweep (`flashipa-scaling -m experiment=scaling`, results `{source}`) on **{first.get('device', '?')}**, "
        f"torch {first.get('torch', '?')}, precision {first.get('precision', '?')}, "
        f"compile {first.get('compile', '?')}. "
        f"Each point: {first.get('warmup_steps', '?')} warm-up steps, then {first.get('steps_timed', '?')} timed "
        "training steps (flow-matching loss with self-conditioning, backward, AdamW). `step ms` is the timed "
        "window's wall time per step; residues/s counts B x L per step. Synthetic random-walk chains.",
        "",
    ]
    lines += [f"![{name}]({path})" for name, path in figures.items()] + [""]
    lines += [
        f"## Fitted slopes (log-log, L >= {min_length} where two points qualify)",
        "",
        "| variant | time per step | peak memory | fitted over L |",
        "|---|---|---|---|",
    ]
    for label, group in groups.items():
        time_fit, mem_fit = fitted_slope(group, "step_ms", min_length), fitted_slope(group, "peak_gib", min_length)
        span = f"{time_fit[1]}-{time_fit[2]}" if time_fit else ""
        lines.append(
            f"| {label} | {_fmt(time_fit[0] if time_fit else None, '.2f')} | "
            f"{_fmt(mem_fit[0] if mem_fit else None, '.2f')} | {span} |"
        )
    lines += [
        "",
        "## Results",
        "",
        "| variant | L x batch | status | step ms | residues/s | peak GiB | loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, group in groups.items():
        for r in group:
            lines.append(
                f"| {label} | {r['length']} x {r.get('batch_size', '')} | {r.get('status', '')} | "
                f"{_fmt(r.get('step_ms'), '.1f')} | {_fmt(r.get('residues_per_s'), '.0f')} | "
                f"{_fmt(r.get('peak_gib'), '.2f')} | {_fmt(r.get('loss'), '.3f')} |"
            )
    lines += [
        "",
        "## Against the anchor (flash_ipa's example model, H100, issue 8)",
        "",
        "| L x batch | anchor dense IPA | anchor FlashIPA | " + " | ".join(groups) + " |",
        "|---|---|---|" + "---|" * len(groups),
    ]
    for length, (batch, dense, flash) in ANCHOR.items():
        cells = []
        for group in groups.values():
            hit = [r for r in group if int(r["length"]) == length]
            cells.append(_cell(hit[0]) if hit else "")
        lines.append(
            f"| {length} x {batch} | {_anchor_cell(dense)} | {_anchor_cell(flash)} | " + " | ".join(cells) + " |"
        )
    if max_lengths:
        lines += [
            "",
            "## Longest chain that trains (bisection, one process per probe)",
            "",
            "| variant | longest L that trained | shortest L that failed | how it failed |",
            "|---|---|---|---|",
        ]
        for label, found in max_lengths.get("variants", {}).items():
            lines.append(
                f"| {label} | {found.get('max_ok_length') or 'none'} | {found.get('min_failed_length') or ''} | "
                f"{found.get('failure') or ''} |"
            )
    return "\n".join(lines) + "\n"


def _cell(row: dict) -> str:
    if row.get("status") != "ok":
        return str(row.get("status"))
    memory = f", {float(row['peak_gib']):.1f} GiB" if _ok(row.get("peak_gib")) else ""
    return f"{float(row['step_ms']):.0f} ms{memory}"


def _anchor_cell(figures) -> str:
    if figures is None:
        return "out of memory"
    ms, gib = figures
    return f"{ms} ms" + (f", {gib} GiB" if gib is not None else "")


def write_report(
    rows: list[dict],
    out_md: Path,
    figures_dir: Path,
    max_lengths: dict | None = None,
    min_length: int = 2048,
    source: str = "",
) -> dict[str, Path]:
    """Write the plots into `figures_dir` and the Markdown into `out_md` (image links relative to it)."""
    groups = rows_by_label(rows)
    figures = {}
    for metric, ylabel, name in PLOTS:
        path = Path(figures_dir) / name
        if plot_metric(groups, metric, ylabel, path, min_length):
            figures[name] = path
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    relative = {name: _relative(path, out_md.parent) for name, path in figures.items()}
    out_md.write_text(markdown(rows, relative, max_lengths, min_length, source))
    return {"markdown": out_md, **figures}


def _relative(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(Path(path).resolve(), Path(start).resolve())
