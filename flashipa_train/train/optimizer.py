"""AdamW whose fused CUDA kernel is switched on where the parameters live on a GPU."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def adamw(params: Iterable[torch.nn.Parameter], fused: bool | str = "auto", **kwargs) -> torch.optim.AdamW:
    """`torch.optim.AdamW(params, fused=..., **kwargs)`; `fused="auto"` is True when every parameter is on a
    CUDA device (one kernel per step, and the device-side step skip of NonFiniteGuard) and torch's default
    elsewhere, so CPU runs keep their numbers. True or False force it.

    Lightning calls the optimizer factory after moving the model to its device, so "auto" sees where the
    parameters are."""
    params = list(params)
    if fused == "auto":
        fused = True if params and all(p.is_cuda for p in params) else None  # None: torch's default
    elif not isinstance(fused, bool):
        raise ValueError(f"optimizer.fused={fused!r}: give auto, true or false.")
    return torch.optim.AdamW(params, fused=fused, **kwargs)
