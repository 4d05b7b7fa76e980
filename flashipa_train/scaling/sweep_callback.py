"""Hydra callback of the scaling sweep: when the multirun ends, turn its results table into the report
(`<sweep dir>/scaling.md` and log-log PNGs under `<sweep dir>/figures/`, with matplotlib) and, with
logger=wandb, into the summary wandb run (`flashipa_train.scaling.wandb_summary`)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from flashipa_train.scaling.results import read_rows

log = logging.getLogger(__name__)


class ScalingSweepSummary(Callback):
    """Args:
    min_length: fit the log-log slopes over L >= this (over all points when fewer than two qualify).
    """

    def __init__(self, min_length: int = 2048):
        self.min_length = int(min_length)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.scaling.get("results_dir") or config.hydra.sweep.dir)
        try:
            rows = read_rows(sweep_dir)
        except FileNotFoundError:
            log.warning("scaling sweep summary: no results table in %s (no point finished)", sweep_dir)
            return
        figures = {}
        if importlib.util.find_spec("matplotlib") is not None:
            from flashipa_train.scaling.report import write_report

            written = write_report(
                rows, sweep_dir / "scaling.md", sweep_dir / "figures", min_length=self.min_length, source=str(sweep_dir)
            )
            figures = {name: path for name, path in written.items() if name != "markdown"}
            print(f"scaling sweep report: {written['markdown']}", flush=True)
        wandb_logger = (config.get("logger") or {}).get("wandb")
        if wandb_logger is not None and "_target_" in wandb_logger:
            from flashipa_train.scaling.wandb_summary import log_scaling_summary

            run_dir = log_scaling_summary(
                rows,
                project=wandb_logger.project,
                save_dir=sweep_dir,
                name=f"summary_{sweep_dir.name}",
                figures=figures,
                offline=wandb_logger.get("offline"),
                min_length=self.min_length,
            )
            print(f"scaling sweep summary run: {run_dir} (offline: wandb sync {run_dir})", flush=True)
