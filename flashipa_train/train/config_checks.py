"""Checks of a composed `flashipa-train` config before any work starts: each bad value is one line naming the
field, the value and what to do, instead of a traceback minutes later (or a silently changed value)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flashipa_train.checkpoint.stored_config import check_same_model
from flashipa_train.checkpoint.weights import read_checkpoint, run_config_from_checkpoint


class ConfigError(ValueError):
    """A config value flashipa-train refuses, with the field, the value and what to do."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_data_config(data: DictConfig) -> None:
    """Crop, batch and split sizes of the structure DataModule (configs/data/default.yaml)."""
    if "crop_length" in data:
        crop = data.crop_length
        _require(
            _is_int(crop) and crop >= 1, f"data.crop_length={crop}: give a whole number of residues >= 1 (e.g. 256)."
        )
        tokens = data.get("max_tokens_per_batch")
        _require(
            _is_int(tokens) and tokens >= crop,
            f"data.max_tokens_per_batch={tokens}: give a whole number >= data.crop_length ({crop}), so one cropped "
            "chain fits in a batch.",
        )
    if data.get("max_batch_size") is not None:
        size = data.max_batch_size
        _require(
            _is_int(size) and size >= 1, f"data.max_batch_size={size}: give a whole number >= 1, or null for no cap."
        )
    if "val_fraction" in data:
        fraction = data.val_fraction
        _require(
            isinstance(fraction, (int, float)) and 0 <= fraction < 1,
            f"data.val_fraction={fraction}: give a fraction in [0, 1) of the entries held out for validation.",
        )
    if "num_workers" in data:
        _require(
            _is_int(data.num_workers) and data.num_workers >= 0,
            f"data.num_workers={data.num_workers}: give a whole number >= 0.",
        )


def check_trainer_config(trainer: DictConfig) -> None:
    """Run length and validation interval."""
    steps, epochs = trainer.get("max_steps", -1), trainer.get("max_epochs", -1)
    _require(_is_int(steps) and (steps >= 1 or steps == -1), f"trainer.max_steps={steps}: give a number of steps >= 1.")
    if steps == -1:
        _require(
            _is_int(epochs) and epochs >= 1,
            f"trainer.max_steps=-1 with trainer.max_epochs={epochs}: the run would never end and the learning-rate "
            "schedule needs its length; give trainer.max_steps >= 1 (or trainer.max_epochs >= 1).",
        )
    interval = trainer.get("val_check_interval")
    if interval is not None:
        _require(
            (_is_int(interval) and interval >= 1) or (isinstance(interval, float) and 0 < interval <= 1),
            f"trainer.val_check_interval={interval}: give a number of steps >= 1 or a fraction of an epoch in (0, 1].",
        )


def check_sample_config(sample: DictConfig | None) -> None:
    """The lengths sampled after training."""
    if not sample or not sample.get("lengths"):
        return
    lengths = list(sample.lengths)
    _require(
        all(_is_int(L) and L >= 1 for L in lengths),
        f"sample.lengths={lengths}: give residue counts >= 1, or [] for none.",
    )
    steps = sample.get("num_steps", 1)
    _require(_is_int(steps) and steps >= 1, f"sample.num_steps={steps}: give a number of Euler steps >= 1.")


def check_writable_folder(folder: str | Path, field: str) -> None:
    """Create `folder` when missing and prove it takes a file, so a read-only folder fails now, not at the first
    checkpoint after hours of work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ConfigError(
            f"{field}={folder}: cannot write there ({type(error).__name__}: {error.strerror or error}); make it "
            f"writable or choose another folder with {field}=..."
        ) from None


def check_checkpoint_inputs(cfg: DictConfig) -> None:
    """`ckpt_path` (resume) and `init_from` (fine-tune) must be local flashipa-train checkpoints readable as data
    whose model is the configured one (or, for `model_from_init`, one the stored config describes)."""
    allow_remote = bool(cfg.get("allow_remote_checkpoints", False))
    configured = OmegaConf.to_container(cfg.model, resolve=True)
    for field in ("ckpt_path", "init_from"):
        path = cfg.get(field)
        if not path:
            continue
        checkpoint = read_checkpoint(path, field, allow_remote)
        if field == "ckpt_path" and "state_dict" not in checkpoint:
            raise ConfigError(
                f"ckpt_path={path}: not a Lightning checkpoint (no 'state_dict'); resume from the "
                "checkpoints/last.ckpt of a flashipa-train run, or fine-tune with init_from=."
            )
        run_config = run_config_from_checkpoint(checkpoint)
        stored_model = (run_config or {}).get("model")
        if stored_model is None:
            continue
        if field == "init_from" and cfg.get("model_from_init"):
            continue  # the stored config replaces cfg.model, after its own schema check
        check_same_model(stored_model, configured, f"{field}={path}")


def check_compile_config(option: Any) -> None:
    """`compile`: auto, true, false (or null), or a mapping of nn.Module.compile arguments."""
    _require(
        option in ("auto", True, False, None) or isinstance(option, (dict, DictConfig)),
        f"compile={option!r}: give auto (CUDA graphs where they pay), true, false, or a mapping of "
        "torch.compile arguments, e.g. 'compile={mode:reduce-overhead}'.",
    )


def check_train_config(cfg: DictConfig) -> None:
    """All the startup checks of a `flashipa-train` run; raises ConfigError (a ValueError) on the first problem."""
    if cfg.get("data") is not None:
        check_data_config(cfg.data)
    check_trainer_config(cfg.trainer)
    check_compile_config(cfg.get("compile"))
    check_sample_config(cfg.get("sample"))
    if cfg.get("paths") is not None and cfg.paths.get("output_dir"):
        check_writable_folder(cfg.paths.output_dir, "paths.output_dir")
    checkpoint_cfg = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if checkpoint_cfg is not None and checkpoint_cfg.get("dirpath"):
        check_writable_folder(checkpoint_cfg.dirpath, "callbacks.model_checkpoint.dirpath")
    check_checkpoint_inputs(cfg)
