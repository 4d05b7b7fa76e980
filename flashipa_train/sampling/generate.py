"""Euler sampling of many backbones per length, in batches, seeded per (seed, length, batch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Seeds of different lengths and batches are spread out so that nearby seeds do not share prior draws.
_LENGTH_STRIDE = 1_000_003
_BATCH_STRIDE = 7_919


@dataclass
class GeneratedBackbone:
    """One sampled chain: `atoms` [L, 4, 3] float32 Angstrom (N, CA, C, O), its length and index within it."""

    length: int
    index: int
    atoms: np.ndarray

    @property
    def name(self) -> str:
        return f"len{self.length}_{self.index}"

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.atoms).all())


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: the first CUDA GPU when present, the CPU otherwise; anything else is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def generate_backbones(
    model: nn.Module,
    flow,
    lengths: list[int],
    samples_per_length: int,
    num_steps: int = 100,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = False,
) -> list[GeneratedBackbone]:
    """`samples_per_length` backbones of every length by `flow.sample` (Euler integration from the prior).

    Runs the model as given (the caller chooses EMA weights and eval mode) on its own device. Batch b of
    length L draws its prior from a generator seeded with (seed, L, b), so a sample does not depend on
    the other lengths requested. Returns the backbones ordered by length, then index.
    """
    if samples_per_length < 1 or not lengths or min(lengths) < 1:
        raise ValueError(
            f"generate_backbones: need n >= 1 and positive lengths, got n={samples_per_length}, "
            f"lengths={list(lengths)}."
        )
    device = next(model.parameters()).device
    batches = [
        (int(L), start, min(batch_size, samples_per_length - start))
        for L in lengths
        for start in range(0, samples_per_length, batch_size)
    ]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # one tick per model call (num_steps + 1 per batch): long chains show their rate and time left
        bar = tqdm(total=len(batches) * (num_steps + 1), desc="sampling", unit="step")

        def tick(*_) -> None:  # a forward hook that returns something replaces the model's output
            bar.update(1)

        hook = model.register_forward_hook(tick)
    generated = []
    try:
        for length, start, count in batches:
            generator = torch.Generator(device=device)
            generator.manual_seed(seed * _LENGTH_STRIDE + length * _BATCH_STRIDE + start)
            if bar is not None:
                bar.set_postfix(length=length, backbones=f"{start}-{start + count - 1}")
            out = flow.sample(model, [length] * count, num_steps=num_steps, device=device, generator=generator)
            atoms = out["atoms"].float().cpu().numpy()  # [count, L, 4, 3]
            generated.extend(GeneratedBackbone(length, start + i, atoms[i]) for i in range(count))
    finally:
        if bar is not None:
            hook.remove()
            bar.close()
    return generated
