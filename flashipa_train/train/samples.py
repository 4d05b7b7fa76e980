"""Sample backbones with the EMA weights at the end of training and write them as PDB files."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from flashipa_train.train.ema import sampling_weights

log = logging.getLogger(__name__)


def write_final_samples(
    module: pl.LightningModule, lengths: list[int], num_steps: int, out_dir: str | Path
) -> list[Path]:
    """Integrate `module.flow.sample` for each length (EMA weights when available) and write
    `out_dir/sample_{i}_len{L}.pdb`. Without biotite (e.g. a GPU image) it writes `out_dir/samples.pt`
    ({"atoms": [B, L_max, 4, 3], "lengths": [B]}) instead. Returns the written paths."""
    with sampling_weights(module):
        out = module.flow.sample(module.model, list(lengths), num_steps=num_steps, device=module.device)
    out_dir = Path(out_dir)
    if importlib.util.find_spec("biotite") is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "samples.pt"
        torch.save({"atoms": out["atoms"].float().cpu(), "lengths": torch.tensor(list(lengths))}, path)
        log.warning("biotite is not installed: wrote the sampled backbones as tensors to %s", path)
        return [path]
    from flashipa_train.io.pdb_writer import write_backbone_pdb

    paths = []
    for i, length in enumerate(lengths):
        atoms = out["atoms"][i, : int(length)]  # [L, 4, 3]
        paths.append(write_backbone_pdb(atoms, out_dir / f"sample_{i}_len{length}.pdb"))
    return paths
