"""Read flashipa-train checkpoints as data: local files unless allowed otherwise, `weights_only=True` always,
and one-line errors for anything that is not a checkpoint dict (random bytes, a bare tensor, a pickle payload)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from lightning_fabric.utilities.cloud_io import _load
from torch import nn

_MODULE_PREFIX = "model."  # FlowModule stores the FlowModel as `self.model`


class CheckpointError(ValueError):
    """A checkpoint path or file that flashipa-train refuses to read, with what to do instead."""


def is_remote_path(path: str | Path) -> bool:
    """True for URLs such as http://, https://, s3:// (file:// and plain paths are local)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def check_checkpoint_path(path: str | Path, field: str, allow_remote: bool = False) -> None:
    """Refuse remote checkpoints (unless `allow_remote`) and local paths that are not files."""
    if is_remote_path(path):
        if not allow_remote:
            raise CheckpointError(
                f"{field}={path}: remote checkpoints are refused; download the file and pass its local path, "
                "or set allow_remote_checkpoints=true (it is still read with weights_only=True)."
            )
        return
    local = Path(str(path).removeprefix("file://"))
    if not local.is_file():
        raise CheckpointError(
            f"{field}={path}: no checkpoint file at {local.resolve()}; pass the .ckpt of a flashipa-train run "
            "(e.g. logs/<task>/runs/<date_time>/checkpoints/last.ckpt)."
        )


def read_checkpoint(path: str | Path, field: str = "ckpt_path", allow_remote: bool = False) -> dict:
    """The checkpoint dict at `path`, read with `weights_only=True` (tensors and plain containers only).

    Raises:
        CheckpointError naming `field` and the path: a remote path without `allow_remote`, a missing file,
        a file holding code (pickled objects other than tensors and plain containers), a file that is not a
        PyTorch checkpoint, or one that holds something other than a dict (e.g. a bare tensor).
    """
    check_checkpoint_path(path, field, allow_remote)
    source = str(path).removeprefix("file://")
    try:
        checkpoint = _load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = re.search(r"unsupported global:? GLOBAL (\S+)", str(error), re.IGNORECASE)
        if blocked:
            raise CheckpointError(
                f"{field}={path}: refused: the file asks to load code ({blocked.group(1)}), which a checkpoint of "
                "flashipa-train never holds (weights_only=True). Do not use files from untrusted sources."
            ) from None
        raise CheckpointError(
            f"{field}={path}: not a PyTorch checkpoint (unreadable with torch.load); pass the .ckpt of a "
            "flashipa-train run."
        ) from None
    except (EOFError, RuntimeError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{field}={path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'empty or truncated file'}); pass the .ckpt of a "
            "flashipa-train run."
        ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"{field}={path}: holds a {type(checkpoint).__name__}, not a checkpoint dict; pass the .ckpt of a "
            "flashipa-train run (or a saved model.state_dict() for init_from)."
        )
    return checkpoint


def ema_weights_from_checkpoint(checkpoint: dict) -> dict[str, torch.Tensor] | None:
    """The EMA callback's shadow weights stored in a Lightning checkpoint, or None if it has none."""
    for state in checkpoint.get("callbacks", {}).values():
        if isinstance(state, dict) and state.get("shadow") is not None:
            return state["shadow"]
    return None


def model_weights_from_checkpoint(
    path: str | Path, prefer_ema: bool = True, field: str = "init_from", allow_remote: bool = False
) -> dict[str, torch.Tensor]:
    """Model state dict (keys without the `model.` prefix) read from `path` with `weights_only=True`.

    Accepts a Lightning checkpoint written by `flashipa-train` (its EMA weights replace the raw ones when
    `prefer_ema` and they exist) or a plain `model.state_dict()` file.
    """
    checkpoint = read_checkpoint(path, field, allow_remote)
    if "state_dict" not in checkpoint:
        if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            raise CheckpointError(
                f"{field}={path}: neither a flashipa-train checkpoint (no 'state_dict') nor a model state dict "
                "(not all values are tensors)."
            )
        return dict(checkpoint)
    weights = {k[len(_MODULE_PREFIX) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(_MODULE_PREFIX)}
    ema = ema_weights_from_checkpoint(checkpoint) if prefer_ema else None
    if ema is not None:
        weights.update(ema)
    return weights


def run_config_from_checkpoint(checkpoint: dict) -> dict | None:
    """The resolved run config a flashipa-train checkpoint stores (plain containers), or None."""
    run_config = checkpoint.get("run_config")
    return run_config if isinstance(run_config, dict) else None


def load_model_weights(
    model: nn.Module, path: str | Path, prefer_ema: bool = True, field: str = "init_from", allow_remote: bool = False
) -> None:
    """Copy the weights stored at `path` into `model`; every parameter and buffer must match by name and shape.

    Raises:
        ValueError naming the first mismatched parameter with both shapes, or the missing/unexpected names.
    """
    weights = model_weights_from_checkpoint(path, prefer_ema=prefer_ema, field=field, allow_remote=allow_remote)
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name in weights and weights[name].shape != tensor.shape:
            raise ValueError(
                f"{field} {path}: parameter '{name}' has shape {tuple(weights[name].shape)} in the checkpoint "
                f"but {tuple(tensor.shape)} in the model built from the config. Use the model config of the run "
                "that wrote the checkpoint (its resolved config is stored under the checkpoint's 'run_config')."
            )
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{field} {path}: the checkpoint does not fit the model built from the config; missing in the "
            f"checkpoint: {missing[:8]}{' ...' if len(missing) > 8 else ''}; not in the model: "
            f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}. Use the model config of the run that wrote it."
        )
    model.load_state_dict(weights, strict=True)
