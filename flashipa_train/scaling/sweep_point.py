"""One point of the scaling sweep: train with a StepTimer, and record the outcome as a row of the sweep's
results table whatever happens (an out-of-memory error or any other failure is a result too). The row starts
with the run's facts (train/run_facts.py)."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from flashipa_train.scaling.results import append_row
from flashipa_train.scaling.step_timer import StepTimer
from flashipa_train.train.run_facts import describe_run

log = logging.getLogger(__name__)


def results_dir_for(cfg: DictConfig) -> Path:
    """`scaling.results_dir` when set; else the multirun's sweep folder (shared by all its points); else the
    run's own output folder."""
    configured = cfg.scaling.get("results_dir")
    if configured:
        return Path(configured)
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(HydraConfig.get().sweep.dir)
    except ImportError:
        pass
    return Path(cfg.paths.output_dir)


def failure_status(error: BaseException) -> str:
    """`out of memory` for device or host OOMs, else `failed: <Type>: <first line of the message>`."""
    message = str(error)
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in message.lower():
        return "out of memory"
    first = message.strip().splitlines()[0][:200] if message.strip() else ""
    return f"failed: {type(error).__name__}: {first}"


def run_scaling_point(cfg: DictConfig, train_fn: Callable[[DictConfig, Sequence[pl.Callback]], dict]) -> dict[str, Any]:
    """Run `train_fn(cfg, [timer])` with a StepTimer set by `cfg.scaling` (warmup_steps, timed_steps) and
    append its row to the results table in `results_dir_for(cfg)`; never raises for a failure of the point
    itself (the sweep goes on). Only rank 0 of a DDP run writes the row."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    row = describe_run(cfg)
    start = time.perf_counter()
    try:
        timer = StepTimer(warmup_steps=cfg.scaling.warmup_steps, timed_steps=cfg.scaling.timed_steps)
        train_fn(cfg, [timer])
        row.update(timer.summary or {})
        row["status"] = "ok" if timer.summary else "failed: no timed steps (raise trainer.max_steps)"
    except Exception as error:  # noqa: BLE001 - every failure of a point is recorded as its result
        row["status"] = failure_status(error)
        log.error("scaling point %s L=%s: %s", row["label"], row["length"], row["status"], exc_info=True)
    row["wall_s"] = time.perf_counter() - start
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(rank_zero_only, "rank", 0) == 0:
        table = append_row(results_dir_for(cfg), row)
        print(
            f"scaling point {row['label']} L={row['length']} x {row['batch_size']}: {row['status']} (results: {table})",
            flush=True,
        )
    return row
