"""Sample backbones with the EMA weights at the end of training and write them as PDB files."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from flashipa_train.train.ema import EMA


def find_ema(trainer: pl.Trainer) -> EMA | None:
    """The trainer's EMA callback, or None when the run has none."""
    return next((c for c in trainer.callbacks if isinstance(c, EMA)), None)


def write_final_samples(
    trainer: pl.Trainer, module: pl.LightningModule, lengths: list[int], num_steps: int, out_dir: str | Path
) -> list[Path]:
    """Integrate `module.flow.sample` for each length (EMA weights when available) and write
    `out_dir/sample_{i}_len{L}.pdb`. Returns the written paths."""
    from flashipa_train.io.pdb_writer import write_backbone_pdb

    ema = find_ema(trainer)
    module.eval()
    if ema is not None:
        ema.swap_in(module)
    try:
        out = module.flow.sample(module.model, list(lengths), num_steps=num_steps, device=module.device)
    finally:
        if ema is not None:
            ema.swap_out(module)
    out_dir = Path(out_dir)
    paths = []
    for i, length in enumerate(lengths):
        atoms = out["atoms"][i, : int(length)]  # [L, 4, 3]
        paths.append(write_backbone_pdb(atoms, out_dir / f"sample_{i}_len{length}.pdb"))
    return paths
