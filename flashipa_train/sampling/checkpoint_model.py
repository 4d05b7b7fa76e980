"""Rebuild the model and flow objective of a flashipa-train checkpoint for sampling: the stored configs are
checked against the project's schema and built by code, the file is read with `weights_only=True`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flashipa_train.checkpoint.stored_config import flow_from_stored_config, model_from_stored_config
from flashipa_train.checkpoint.weights import load_model_weights, read_checkpoint, run_config_from_checkpoint


@dataclass
class SamplerFromCheckpoint:
    """A model with the checkpoint's (EMA) weights in eval mode, its flow objective and the stored run config."""

    model: nn.Module
    flow: Any
    run_config: dict


def load_sampler_from_checkpoint(
    ckpt_path: str | Path,
    device: torch.device | str = "cpu",
    prefer_ema: bool = True,
    allow_remote: bool = False,
    attention_overrides: dict | None = None,
) -> SamplerFromCheckpoint:
    """Build the `FlowModel` and `FlowMatcher` from the run config stored in a flashipa-train checkpoint and load
    its weights (the EMA shadow when `prefer_ema` and present). `attention_overrides` (e.g. {"fp8_sampling":
    True}) are set over the stored model.attention before the schema check.

    Raises:
        CheckpointError (a ValueError) for a path or file that is not a local flashipa-train checkpoint;
        ValueError when the checkpoint stores no run config or one that fails the schema (stored_config.py).
    """
    checkpoint = read_checkpoint(ckpt_path, "ckpt_path", allow_remote)
    run_config = run_config_from_checkpoint(checkpoint)
    if run_config is None or "model" not in run_config or "flow" not in run_config:
        raise ValueError(
            f"ckpt_path {ckpt_path}: the checkpoint stores no 'run_config' with 'model' and 'flow' sections; "
            "flashipa-sample needs a checkpoint written by flashipa-train (checkpoints/last.ckpt of a run)."
        )
    del checkpoint
    stored_model = run_config["model"]
    if attention_overrides:
        stored_model = {**stored_model, "attention": {**stored_model["attention"], **attention_overrides}}
    model = model_from_stored_config(stored_model, f"ckpt_path {ckpt_path}")
    flow = flow_from_stored_config(run_config["flow"], f"ckpt_path {ckpt_path}")
    load_model_weights(model, ckpt_path, prefer_ema=prefer_ema, field="ckpt_path", allow_remote=allow_remote)
    return SamplerFromCheckpoint(model=model.to(device).eval(), flow=flow, run_config=run_config)
