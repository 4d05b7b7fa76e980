"""`compile: auto`: CUDA graphs (torch.compile mode reduce-overhead) where they pay, eager elsewhere.

Measured on an H200 (docs/benchmarks/train_step.md): a short-chain step is bound by the host (Python and
some 10^4 kernel launches per step: about 150 ms at 256 x 8 and at 4096 x 1, whatever the GPU does), and
CUDA graphs replay it in 28 ms; a long chain (32768 x 1, about 1 s) is bound by the GPU, where graphs
save little and their compilation (about 3 minutes) and static memory pools cost. Graphs also need fixed
batch shapes: one graph is recorded per (batch, length), so real chains, packed into batches of varying
shape, stay eager until the data module pads to fixed shapes.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from flashipa_train.data.synthetic import batch_size_for

# residues per batch up to which an eager step is host-bound on an H200 (256 x 8 and 4096 x 1 both ~150 ms)
GRAPHS_MAX_RESIDUES = 4096
REDUCE_OVERHEAD = {"mode": "reduce-overhead"}


def on_cuda(trainer_cfg: DictConfig) -> bool:
    """True when the trainer will run on a CUDA GPU (accelerator gpu, cuda or auto, and one is present)."""
    return trainer_cfg.get("accelerator") in ("gpu", "cuda", "auto") and torch.cuda.is_available()


def fixed_batch_residues(data_cfg: DictConfig) -> int | None:
    """Residues of every batch (B * L) when the data module yields one fixed shape (synthetic chains), else None."""
    if "length" not in data_cfg:
        return None
    length = int(data_cfg.length)
    return length * batch_size_for(length, data_cfg.get("batch_size"), data_cfg.get("tokens_per_batch", length))


def resolved_compile(cfg: DictConfig) -> Any:
    """The `compile` setting that will run: `auto` becomes {mode: reduce-overhead} on a CUDA GPU with fixed
    batch shapes of at most GRAPHS_MAX_RESIDUES residues, else false; any other value is returned as given."""
    option = cfg.get("compile")
    if option != "auto":
        return option
    residues = fixed_batch_residues(cfg.data)
    if on_cuda(cfg.trainer) and residues is not None and residues <= GRAPHS_MAX_RESIDUES:
        return OmegaConf.create(REDUCE_OVERHEAD)
    return False


def use_compile_cache(cache_dir: str | None) -> None:
    """Keep torch.compile's artefacts (Inductor's FX graph and AOTAutograd caches, Triton kernels) in
    `cache_dir`, so that a rerun of the same model loads them instead of compiling again; an existing
    TORCHINDUCTOR_CACHE_DIR wins."""
    if cache_dir and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        os.makedirs(cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(cache_dir)
