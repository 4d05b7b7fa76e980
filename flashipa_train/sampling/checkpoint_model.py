"""Rebuild the model and flow objective of a flashipa-train checkpoint for sampling (weights only, safe loading)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from flashipa_train.train.weights import load_model_weights


@dataclass
class SamplerFromCheckpoint:
    """A model with the checkpoint's (EMA) weights in eval mode, its flow objective and the stored run config."""

    model: nn.Module
    flow: Any
    run_config: dict


def load_sampler_from_checkpoint(
    ckpt_path: str | Path, device: torch.device | str = "cpu", prefer_ema: bool = True
) -> SamplerFromCheckpoint:
    """Build the `FlowModel` and `FlowMatcher` from the run config stored in a flashipa-train checkpoint and load
    its weights (the EMA shadow when `prefer_ema` and present), reading the file with `weights_only=True`.

    Raises:
        FileNotFoundError when `ckpt_path` is not a file; ValueError when the checkpoint stores no run config
        (a plain state dict or a checkpoint from another program).
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {path}; pass the .ckpt of a flashipa-train run.")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    run_config = checkpoint.get("run_config") if isinstance(checkpoint, dict) else None
    if not isinstance(run_config, dict) or "model" not in run_config or "flow" not in run_config:
        raise ValueError(
            f"ckpt_path {path}: the checkpoint stores no 'run_config' with 'model' and 'flow' sections; "
            "flashipa-sample needs a checkpoint written by flashipa-train (checkpoints/last.ckpt of a run)."
        )
    del checkpoint
    model = instantiate(OmegaConf.create(run_config["model"]), _convert_="all")
    load_model_weights(model, path, prefer_ema=prefer_ema)
    flow = instantiate(OmegaConf.create(run_config["flow"]))
    return SamplerFromCheckpoint(model=model.to(device).eval(), flow=flow, run_config=run_config)
