"""Sample backbones with the EMA weights at the end of training and write them as PDB files (or samples.pt)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytorch_lightning as pl

from flashipa_train.sampling.generate import GeneratedBackbone
from flashipa_train.sampling.outputs import SAMPLES_FILE, save_samples, write_structure_files
from flashipa_train.train.ema import sampling_weights

log = logging.getLogger(__name__)


def write_final_samples(
    module: pl.LightningModule, lengths: list[int], num_steps: int, out_dir: str | Path
) -> list[Path]:
    """Integrate `module.flow.sample` for each length (EMA weights when available) and write
    `out_dir/len<L>_<i>.pdb` (i counts the samples of one length). Without biotite (e.g. a GPU image) it
    writes `out_dir/samples.pt` instead, the format `flashipa-sample from_samples=...` reads. Returns the
    written paths."""
    with sampling_weights(module):
        out = module.flow.sample(module.model, list(lengths), num_steps=num_steps, device=module.device)
    atoms = out["atoms"].float().cpu().numpy()  # [B, L_max, 4, 3]
    backbones = []
    for i, length in enumerate(int(L) for L in lengths):
        index = sum(b.length == length for b in backbones)
        backbones.append(GeneratedBackbone(length, index, atoms[i, :length]))
    if importlib.util.find_spec("biotite") is None:
        path = save_samples(backbones, Path(out_dir) / SAMPLES_FILE)
        log.warning("biotite is not installed: wrote the sampled backbones as tensors to %s", path)
        return [path]
    return write_structure_files(backbones, out_dir, formats=("pdb",))
