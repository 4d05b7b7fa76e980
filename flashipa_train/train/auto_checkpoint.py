"""`model.checkpoint_blocks=auto`: how many trunk blocks to recompute in the backward, chosen at the start of
training from the GPU's free memory.

Two probe forwards of the training loss (chains of PROBE_TOKENS and twice as many, on the training device,
under the run's precision) measure the bytes autograd keeps for the backward, once with no block
checkpointed and once with all of them. Each is extrapolated to the run's tokens per batch with the growth
exponent the two probes show (1 for the flash path, up to 2 for dense_ipa's pair tensor); a block's share is
the difference over the number of blocks. The fewest checkpointed blocks whose prediction fits in
BUDGET_FRACTION of the free memory (after the optimizer's two moments and the gradients) are used. On a CPU
nothing is checkpointed: host memory is not the limit there.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext

import pytorch_lightning as pl
import torch

from flashipa_train.data.synthetic import synthetic_batch

log = logging.getLogger(__name__)

PROBE_TOKENS = 256
BUDGET_FRACTION = 0.6  # of the free memory: the rest for temporaries of the forward and backward


def saved_activation_bytes(model: torch.nn.Module, flow, batch: dict) -> int:
    """Bytes of the tensors the training loss of `batch` keeps for its backward (distinct storages, the
    model's parameters left out); the graph is dropped without a backward."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        flow.training_loss(model, batch, generator=torch.Generator(batch["atoms"].device).manual_seed(0))
    return sum(storages.values())


def extrapolate(small: float, large: float, tokens_small: int, tokens_large: int, tokens: int) -> float:
    """`large` * (tokens / tokens_large) ** e with e the growth between the probes, kept in [1, 2]."""
    exponent = math.log(max(large, 1.0) / max(small, 1.0)) / math.log(tokens_large / tokens_small)
    return large * (tokens / tokens_large) ** min(2.0, max(1.0, exponent))


def blocks_to_checkpoint(kept_none: float, kept_all: float, num_blocks: int, budget: float) -> int:
    """The fewest checkpointed blocks whose predicted activation bytes fit in `budget` (num_blocks when
    none does): kept(n) = kept_none - n (kept_none - kept_all) / num_blocks."""
    per_block = max(0.0, kept_none - kept_all) / num_blocks
    for n in range(num_blocks + 1):
        if kept_none - n * per_block <= budget:
            return n
    return num_blocks


def choose_checkpoint_blocks(model, flow, tokens: int, free_bytes: float, forward_context=nullcontext) -> int:
    """The number of blocks to checkpoint for batches of `tokens` residues with `free_bytes` of device memory
    free (see the module docstring); probes on the model's device inside `forward_context()` (the run's
    autocast). Leaves `model.checkpoint_blocks` as it found it."""
    device = next(model.parameters()).device
    previous, kept = model.checkpoint_blocks, {}
    try:
        for blocks in (0, model.num_blocks):
            model.checkpoint_blocks = blocks
            sizes = []
            for probe in (PROBE_TOKENS, 2 * PROBE_TOKENS):
                batch = synthetic_batch(1, probe, torch.Generator().manual_seed(0))
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                with forward_context():
                    sizes.append(saved_activation_bytes(model, flow, batch))
            kept[blocks] = extrapolate(sizes[0], sizes[1], PROBE_TOKENS, 2 * PROBE_TOKENS, tokens)
    finally:
        model.checkpoint_blocks = previous
    # AdamW's two moments and the gradients, in the parameters' dtype, are not allocated yet
    state = 3 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    budget = BUDGET_FRACTION * (free_bytes - state)
    chosen = blocks_to_checkpoint(kept[0], kept[model.num_blocks], model.num_blocks, budget)
    log.info(
        "checkpoint_blocks=auto: %d of %d blocks for %d tokens per batch (predicted activations %.2f GiB "
        "without, %.2f GiB with all; budget %.2f GiB of %.2f GiB free)",
        chosen,
        model.num_blocks,
        tokens,
        kept[0] / 2**30,
        kept[model.num_blocks] / 2**30,
        budget / 2**30,
        free_bytes / 2**30,
    )
    return chosen


class AutoCheckpointBlocks(pl.Callback):
    """Sets `pl_module.model.checkpoint_blocks` at the start of training (see the module docstring).

    Args:
        tokens: residues per training batch (batch size x longest chain) the choice is made for
    """

    def __init__(self, tokens: int):
        self.tokens = tokens
        self.chosen: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        model = pl_module.model
        device = next(model.parameters()).device
        if device.type != "cuda":
            self.chosen = 0
            log.info("checkpoint_blocks=auto: 0 on %s (no GPU memory limit to fit)", device.type)
        else:
            free, _ = torch.cuda.mem_get_info(device)
            self.chosen = choose_checkpoint_blocks(
                model, pl_module.flow, self.tokens, free, trainer.precision_plugin.forward_context
            )
            torch.cuda.empty_cache()
        model.checkpoint_blocks = self.chosen
