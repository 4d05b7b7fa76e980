"""One point of the scaling sweep: train with a StepTimer, and record the outcome as a row of the sweep's
results table whatever happens (an out-of-memory error or any other failure is a result too)."""

from __future__ import annotations

import gc
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from flashipa_train.data.synthetic import batch_size_for
from flashipa_train.scaling.results import append_row, variant_label
from flashipa_train.train.compile_choice import resolved_compile

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


def describe_point(cfg: DictConfig) -> dict[str, Any]:
    """The row's identifying columns, taken from the config before anything runs: variant, backend, label,
    length, batch_size, precision, compile, checkpoint_blocks, device and the library versions. Every
    training run logs them as its wandb config's top-level keys (runs are filtered and grouped by them)."""
    attention = cfg.model.attention
    backend = attention.get("backend", "auto") if attention.name != "dense_ipa" else "torch"
    data = cfg.data
    if "length" in data:  # synthetic chains
        length = data.length
        batch = batch_size_for(length, data.get("batch_size"), data.get("tokens_per_batch", length))
    elif data.get("crop_length"):  # real chains cropped to crop_length, packed under the token budget
        length = data.crop_length
        batch = max(1, int(data.get("max_tokens_per_batch") or length) // int(length))
    else:  # a data config of another kind: no length to report
        length, batch = 0, None
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    compile_option = compile_description(resolved_compile(cfg))
    checkpoint_blocks = int(cfg.model.get("checkpoint_blocks") or 0)
    return {
        "variant": attention.name,
        "backend": backend,
        "label": variant_label(attention.name, backend, compile_option, checkpoint_blocks),
        "length": int(length),
        "batch_size": batch,
        "precision": str(cfg.trainer.get("precision")),
        "compile": compile_option,
        "checkpoint_blocks": checkpoint_blocks,
        "device": device,
        **library_versions(),
        "run_dir": str(cfg.paths.output_dir),
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that set the speed ("none" where one is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name, distribution in (
        ("torch", "torch"),
        ("triton", "triton"),
        ("lightning", "pytorch-lightning"),
        ("flashipa_train", "flashipa_train"),
    ):
        try:
            found[name] = version(distribution)
        except PackageNotFoundError:
            found[name] = "none"
    found["torch"] = torch.__version__  # the imported build (e.g. 2.13.0+cpu)
    return found


def compile_description(option: Any) -> str:
    """The `compile` setting as a table cell: "off", "on" (torch.compile's defaults) or its arguments
    ("mode=reduce-overhead")."""
    if not option:
        return "off"
    if isinstance(option, (dict, DictConfig)):
        return " ".join(f"{key}={value}" for key, value in option.items()) or "on"
    return "on"


def failure_status(error: BaseException) -> str:
    """`out of memory` for device or host OOMs, else `failed: <Type>: <first line of the message>`."""
    message = str(error)
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in message.lower():
        return "out of memory"
    first = message.strip().splitlines()[0][:200] if message.strip() else ""
    return f"failed: {type(error).__name__}: {first}"


def run_scaling_point(cfg: DictConfig, train_fn: Callable[[DictConfig], dict]) -> dict[str, Any]:
    """Run `train_fn(cfg)` and append its row to the results table in `results_dir_for(cfg)`; never raises
    for a failure of the point itself (the sweep goes on). Only rank 0 of a DDP run writes the row."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    row = describe_point(cfg)
    start = time.perf_counter()
    try:
        result = train_fn(cfg)
        timing = result.get("step_timing")
        row.update(timing or {})
        row["status"] = "ok" if timing else "failed: no timed steps (raise trainer.max_steps)"
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
