"""The scaling sweep's summary wandb run: every point as a row of one Table, log-log line charts of step time,
residues/s and peak memory against L (one line per variant), the fitted slopes and the report's PNGs.

The per-point runs (one per sweep job, grouped by variant) hold each point's config and figures; this run
puts them side by side. `wandb.plot.line_series` draws linear axes only, so the charts plot log2 L against
log10 of the figure: straight lines are power laws, their slope the exponent (x2 per step of 1 on the
x-axis)."""

from __future__ import annotations

import math
from pathlib import Path

from flashipa_train.scaling.report import fitted_slope, rows_by_label
from flashipa_train.train.wandb_logger import rows_to_table, wandb_offline

SUMMARY_PREFIX = "scaling_summary/"
# figure -> chart title; the chart's key is scaling_summary/<figure>_loglog
CHARTS = {
    "step_ms": "time per training step: log10(ms) vs log2(L)",
    "residues_per_s": "throughput: log10(residues/s) vs log2(L)",
    "peak_gib": "peak GPU memory: log10(GiB) vs log2(L)",
}


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def log_log_series(rows: list[dict], metric: str) -> tuple[list[list[float]], list[list[float]], list[str]]:
    """(xs, ys, labels): per variant, log2 L and log10 `metric` of its successful points; variants with no
    such point are left out."""
    xs, ys, labels = [], [], []
    for label, group in rows_by_label(rows).items():
        points = [
            (int(r["length"]), float(r[metric]))
            for r in group
            if r.get("status") == "ok" and _finite_positive(r.get(metric))
        ]
        if points:
            xs.append([math.log2(length) for length, _ in points])
            ys.append([math.log10(value) for _, value in points])
            labels.append(label)
    return xs, ys, labels


def summary_figures(rows: list[dict], min_length: int = 2048) -> dict[str, float]:
    """Run-summary scalars: point counts and each variant's fitted log-log slope of every charted figure."""
    figures = {"points": len(rows), "points_ok": sum(r.get("status") == "ok" for r in rows)}
    for label, group in rows_by_label(rows).items():
        for metric in CHARTS:
            fit = fitted_slope(group, metric, min_length)
            if fit is not None:
                figures[f"slope/{metric}/{label}"] = fit[0]
    return figures


def log_scaling_summary(
    rows: list[dict],
    project: str,
    save_dir: str | Path,
    name: str = "summary",
    group: str = "scaling-summary",
    figures: dict[str, Path] | None = None,
    offline: bool | None = None,
    min_length: int = 2048,
) -> Path:
    """Make the summary run in `project` (offline without credentials) under `save_dir/wandb/` and
    return its folder (`wandb sync` uploads it). Keys:
        scaling_summary/points               Table, one row per sweep point (the results table's columns)
        scaling_summary/<figure>_loglog      line_series per figure in CHARTS, one line per variant
        scaling_summary/<png stem>           the report's PNGs (true log-log axes), when `figures` are given
        summary: points, points_ok, slope/<figure>/<variant>
    """
    import wandb

    labels = list(rows_by_label(rows))
    first = rows[0] if rows else {}
    config = {
        "variants": labels,
        "lengths": sorted({int(r["length"]) for r in rows}),
        "points": len(rows),
        **{key: first.get(key) for key in ("device", "precision", "compile", "torch", "triton") if key in first},
    }
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        group=group,
        name=name,
        job_type="scaling-summary",
        dir=str(save_dir),
        mode="offline" if wandb_offline(offline) else "online",
        config=config,
        reinit="finish_previous",
    )
    payload = {SUMMARY_PREFIX + "points": rows_to_table(rows)}
    for metric, title in CHARTS.items():
        xs, ys, keys = log_log_series(rows, metric)
        if keys:
            payload[f"{SUMMARY_PREFIX}{metric}_loglog"] = wandb.plot.line_series(
                xs=xs, ys=ys, keys=keys, title=title, xname="log2 L"
            )
    for path in (figures or {}).values():
        payload[SUMMARY_PREFIX + Path(path).stem] = wandb.Image(str(path))
    run.log(payload)
    run.summary.update(summary_figures(rows, min_length))
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir
