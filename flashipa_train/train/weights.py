"""Load model weights from a training checkpoint for fine-tuning or sampling (weights only, safe loading)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

_MODULE_PREFIX = "model."  # FlowModule stores the FlowModel as `self.model`


def ema_weights_from_checkpoint(checkpoint: dict) -> dict[str, torch.Tensor] | None:
    """The EMA callback's shadow weights stored in a Lightning checkpoint, or None if it has none."""
    for state in checkpoint.get("callbacks", {}).values():
        if isinstance(state, dict) and state.get("shadow") is not None:
            return state["shadow"]
    return None


def model_weights_from_checkpoint(path: str | Path, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """Model state dict (keys without the `model.` prefix) read from `path` with `weights_only=True`.

    Accepts a Lightning checkpoint written by `flashipa-train` (its EMA weights replace the raw ones when
    `prefer_ema` and they exist) or a plain `model.state_dict()` file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"init_from: no checkpoint file at {path}; pass the .ckpt of a flashipa-train run.")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in checkpoint:
        return dict(checkpoint)
    weights = {k[len(_MODULE_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(_MODULE_PREFIX)}
    ema = ema_weights_from_checkpoint(checkpoint) if prefer_ema else None
    if ema is not None:
        weights.update(ema)
    return weights


def model_config_from_checkpoint(path: str | Path) -> dict | None:
    """The `model` section of the run config stored in a flashipa-train checkpoint, or None if it has none."""
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    run_config = checkpoint.get("run_config") if isinstance(checkpoint, dict) else None
    return run_config.get("model") if isinstance(run_config, dict) else None


def load_model_weights(model: nn.Module, path: str | Path, prefer_ema: bool = True) -> None:
    """Copy the weights stored at `path` into `model`; every parameter and buffer must match by name and shape.

    Raises:
        ValueError naming the first mismatched parameter with both shapes, or the missing/unexpected names.
    """
    weights = model_weights_from_checkpoint(path, prefer_ema=prefer_ema)
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name in weights and weights[name].shape != tensor.shape:
            raise ValueError(
                f"init_from {path}: parameter '{name}' has shape {tuple(weights[name].shape)} in the checkpoint "
                f"but {tuple(tensor.shape)} in the model built from the config. Use the model config of the run "
                "that wrote the checkpoint (its resolved config is stored under the checkpoint's 'run_config')."
            )
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"init_from {path}: the checkpoint does not fit the model built from the config; missing in the "
            f"checkpoint: {missing[:8]}{' ...' if len(missing) > 8 else ''}; not in the model: "
            f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}. Use the model config of the run that wrote it."
        )
    model.load_state_dict(weights, strict=True)
