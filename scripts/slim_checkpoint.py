"""A training checkpoint cut to what sampling and analysis read: the EMA weights (the raw ones where a run kept
no EMA) as the state dict, in bf16, with the run config; no optimizer, scheduler or callback state. A device
call brings back files of at most 16 MiB, and the anchor model's fp32 checkpoint with Adam state is ~250 MB.

    python scripts/slim_checkpoint.py last.ckpt weights.ckpt
"""

import sys

import torch

from flashipa_train.checkpoint.weights import ema_weights_from_checkpoint


def slim(src: str, dst: str) -> None:
    checkpoint = torch.load(src, map_location="cpu", weights_only=True)
    weights = dict(checkpoint["state_dict"])
    ema = ema_weights_from_checkpoint(checkpoint)
    if ema is not None:
        weights.update({f"model.{name}": tensor for name, tensor in ema.items()})
    weights = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()}
    kept = {k: checkpoint[k] for k in ("run_config", "global_step", "epoch", "hyper_parameters") if k in checkpoint}
    torch.save(dict(state_dict=weights, **kept), dst)


if __name__ == "__main__":
    slim(sys.argv[1], sys.argv[2])
