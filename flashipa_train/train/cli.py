"""`flashipa-train`: the Hydra entry point. Builds data, model, flow objective, callbacks, loggers and trainer
from `configs/train.yaml`, fits, then samples a few backbones with the EMA weights and writes them as PDB."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from flashipa_train.checkpoint.stored_config import checked_model_config
from flashipa_train.checkpoint.weights import (
    CheckpointError,
    load_model_weights,
    read_checkpoint,
    run_config_from_checkpoint,
)
from flashipa_train.config import CONFIG_DIR
from flashipa_train.data.example_store import PreprocessedDirError
from flashipa_train.train.auto_checkpoint import AutoCheckpointBlocks
from flashipa_train.train.checkpoint_io import AtomicCheckpointIO
from flashipa_train.train.compile_choice import on_cuda, resolved_compile, use_compile_cache
from flashipa_train.train.config_checks import ConfigError, check_train_config
from flashipa_train.train.module import FlowModule
from flashipa_train.train.run_facts import describe_run
from flashipa_train.train.samples import write_final_samples
from flashipa_train.train.wandb_logger import finish_wandb_run, log_run_config

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a `callbacks` or `logger` group that has a `_target_` (null entries are off)."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if isinstance(entry, DictConfig) and "_target_" in entry]


def _resolve_auto_precision(trainer_cfg: DictConfig) -> None:
    """`precision: auto` means bf16-mixed on a CUDA GPU and fp32 on CPU."""
    if trainer_cfg.get("precision") != "auto":
        return
    trainer_cfg.precision = "bf16-mixed" if on_cuda(trainer_cfg) else "32-true"


def _check_finetune_inputs(cfg: DictConfig) -> None:
    """experiment=finetune needs a checkpoint and a structure folder; say which one is missing."""
    if not cfg.get("init_from"):
        raise ValueError(
            "experiment=finetune needs init_from=PATH: the .ckpt of a flashipa-train run "
            "(e.g. logs/quickstart/runs/<date_time>/checkpoints/last.ckpt)."
        )
    if cfg.data.get("pdb_dir") is None and cfg.data.get("data_dir") is None:
        raise ValueError(
            "experiment=finetune needs data.pdb_dir=FOLDER (your PDB/mmCIF files) or data.data_dir=DIR "
            "(written by flashipa-preprocess)."
        )


def _adopt_checkpoint_model_config(cfg: DictConfig) -> None:
    """Replace `cfg.model` by the model config stored in the `init_from` checkpoint, so fine-tuning builds
    the architecture the weights were trained with (model.* overrides on the command line are then ignored).
    The stored config is data: it must pass the project's schema (stored_config.py) before it is used."""
    checkpoint = read_checkpoint(cfg.init_from, "init_from", bool(cfg.get("allow_remote_checkpoints", False)))
    stored = (run_config_from_checkpoint(checkpoint) or {}).get("model")
    if stored is None:
        log.warning("init_from %s stores no model config; building the model from this run's config", cfg.init_from)
        return
    cfg.model = OmegaConf.create(checked_model_config(stored, f"init_from={cfg.init_from}"))
    log.info("Using the model config stored in %s (set model_from_init=false to use this run's)", cfg.init_from)


def _continue_in_checkpoint_folder(cfg: DictConfig) -> None:
    """On resume, keep writing checkpoints into the folder of the checkpoint resumed from (when it is still
    writable), so the best checkpoint and last.ckpt of the whole run stay in one place and Lightning restores
    the best-checkpoint bookkeeping; logs go to the new run folder."""
    checkpoint_cfg = (cfg.get("callbacks") or {}).get("model_checkpoint")
    path = cfg.get("ckpt_path")
    if not path or checkpoint_cfg is None or "://" in str(path):
        return
    folder = Path(path).resolve().parent
    if os.access(folder, os.W_OK):
        checkpoint_cfg.dirpath = str(folder)
        log.info("Resuming: checkpoints continue in %s", folder)


def _compile_model(model: torch.nn.Module, flow: Any, option: Any) -> None:
    """`compile: true` compiles the model in place with torch.compile's defaults; a mapping passes its keys
    (backend, mode, dynamic, fullgraph, options) to `nn.Module.compile` (`auto` is resolved before, see
    compile_choice.py). In place, so parameter names and
    checkpoints stay those of the plain model. The flow matcher's losses (some 400 small ops forward and as
    many backward) are compiled with the same arguments but never under CUDA graphs (no `mode`): their
    outputs are logged and read after later steps, when a graph replay would have overwritten them."""
    if not option:
        return
    kwargs = OmegaConf.to_container(option, resolve=True) if isinstance(option, DictConfig) else {}
    model.compile(**kwargs)
    flow.losses = torch.compile(flow.losses, **{k: v for k, v in kwargs.items() if k != "mode"})
    log.info(
        "torch.compile on the model and the losses (%s): compiled during the first training steps, cached in %s",
        kwargs or "defaults",
        os.environ.get("TORCHINDUCTOR_CACHE_DIR", "torch's default cache"),
    )


def train(cfg: DictConfig, extra_callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Run one training job described by `cfg` (a composed `train.yaml`), with `extra_callbacks` (built by the
    caller, e.g. a scaling sweep's StepTimer) before the configured ones. Returns the final callback metrics
    as floats plus `checkpoint_dir`, `last_checkpoint`, `best_checkpoint` and `sample_paths`."""
    if cfg.get("ckpt_path") and cfg.get("init_from"):
        raise ValueError(
            f"ckpt_path={cfg.ckpt_path} (resume a run) and init_from={cfg.init_from} (fine-tune from weights) "
            "exclude each other: pass only one."
        )
    if cfg.get("model_from_init"):
        _check_finetune_inputs(cfg)
    _continue_in_checkpoint_folder(cfg)
    check_train_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    _resolve_auto_precision(cfg.trainer)
    cfg.compile = resolved_compile(cfg)
    if cfg.compile:
        use_compile_cache(cfg.get("compile_cache_dir"))

    if cfg.get("model_from_init"):
        _adopt_checkpoint_model_config(cfg)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, _convert_="all")
    if cfg.get("init_from"):
        load_model_weights(model, cfg.init_from, allow_remote=bool(cfg.get("allow_remote_checkpoints", False)))
        log.info("Initialised the model weights from %s", cfg.init_from)
    flow = instantiate(cfg.flow)
    _compile_model(model, flow, cfg.get("compile"))
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = FlowModule(
        model=model,
        flow=flow,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        seed=cfg.seed,
        val_noise_draws=cfg.get("val_noise_draws", 4),
        run_config=run_config,
    )
    loggers = _instantiate_group(cfg.get("logger"))
    facts = describe_run(cfg)
    if cfg.model.get("checkpoint_blocks") == "auto":
        extra_callbacks = [*extra_callbacks, AutoCheckpointBlocks(facts["length"] * (facts["batch_size"] or 1))]
    callbacks = [
        *extra_callbacks,
        *(c for c in _instantiate_group(cfg.get("callbacks")) if loggers or not isinstance(c, LearningRateMonitor)),
    ]  # a LearningRateMonitor refuses to run without a logger
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    log_run_config(trainer.loggers, facts, run_config)
    # weights_only: a resumed checkpoint is data (tensors and plain containers), never code
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)

    result: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None:
        result.update(
            checkpoint_dir=checkpoint.dirpath,
            last_checkpoint=checkpoint.last_model_path,
            best_checkpoint=checkpoint.best_model_path,
        )
    sample_cfg = cfg.get("sample")
    if sample_cfg and sample_cfg.get("lengths") and trainer.is_global_zero:
        result["num_samples"] = len(sample_cfg.lengths)
        result["sample_paths"] = write_final_samples(
            module, list(sample_cfg.lengths), int(sample_cfg.num_steps), sample_cfg.out_dir
        )
    if trainer.is_global_zero:
        _print_outputs(result)
    return result


def _print_outputs(result: dict[str, Any]) -> None:
    lines = ["", "flashipa-train finished."]
    if result.get("last_checkpoint"):
        lines.append(f"  last checkpoint: {result['last_checkpoint']}")
    if result.get("best_checkpoint"):
        lines.append(f"  best checkpoint (val/loss): {result['best_checkpoint']}")
    if result.get("sample_paths"):
        first = Path(result["sample_paths"][0])
        kind = "PDB" if first.suffix == ".pdb" else "one tensor file; install biotite for PDB"
        lines.append(f"  {result['num_samples']} sampled backbones ({kind}): {first.parent}")
    for key in ("train/loss", "val/loss"):
        if key in result:
            lines.append(f"  {key}: {result[key]:.4f}")
    print("\n".join(lines), flush=True)


SCALING_CONFIG = (
    "this config has a scaling section (experiment=scaling): run sweep points with "
    "`flashipa-scaling -m experiment=scaling ...` (or python -m flashipa_train.scaling.cli)."
)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Console entry point `flashipa-train`; returns val/loss so Hydra sweepers can optimise it.

    A config with a `scaling` section is refused: sweep points run under `flashipa-scaling`.
    Each job's wandb run is finished when the job ends, so every job of a multirun is its own run."""
    try:
        try:
            if cfg.get("scaling"):
                raise ConfigError(SCALING_CONFIG)
            result = train(cfg)
        except (ConfigError, CheckpointError, PreprocessedDirError) as error:  # bad inputs: one line, no traceback
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"flashipa-train: error: {error}", file=sys.stderr)
            sys.exit(2)
        finish_wandb_run()
        return result.get("val/loss")
    finally:
        finish_wandb_run(failed=True)  # still open only when the job raised


if __name__ == "__main__":
    main()
