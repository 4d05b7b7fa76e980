"""Synthetic backbone chains for benchmarks and scaling sweeps: no structure files, no biotite.

A chain is a random walk of CA positions with 3.8 A steps and uniformly random residue frames; its N, C
and O atoms come from ideal geometry. That is not a protein, but the training step costs the same as on a
real chain of that length, which is all a timing sweep needs.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from flashipa_train.geometry import Rigid, backbone_atoms_from_frames, uniform_so3

CA_CA_DISTANCE = 3.8  # Angstrom


def synthetic_batch(batch_size: int, length: int, generator: torch.Generator, name: str = "synthetic") -> dict:
    """A padded batch like `pad_backbone_batch` returns: B random-walk chains of `length` residues, each
    centred at its CA mean, all residues and atoms present. `source` names each chain as `name chain i`."""
    steps = torch.randn(batch_size, length, 3, generator=generator)  # [B, L, 3]
    ca = CA_CA_DISTANCE * torch.cumsum(steps / steps.norm(dim=-1, keepdim=True), dim=1)
    ca = ca - ca.mean(dim=1, keepdim=True)
    rots = uniform_so3((batch_size, length), generator=generator)  # [B, L, 3, 3]
    atoms = backbone_atoms_from_frames(Rigid(rots, ca))  # [B, L, 4, 3]
    return {
        "atoms": atoms,
        "atom_mask": torch.ones(batch_size, length, 4, dtype=torch.bool),
        "res_mask": torch.ones(batch_size, length, dtype=torch.bool),
        "aatype": torch.zeros(batch_size, length, dtype=torch.int64),
        "residue_index": torch.arange(length).expand(batch_size, length).clone(),
        "chain_index": torch.zeros(batch_size, length, dtype=torch.int64),
        "b_factors": torch.zeros(batch_size, length, 4),
        "seq_mask": torch.ones(batch_size, length, dtype=torch.bool),
        "lengths": torch.full((batch_size,), length, dtype=torch.int64),
        "source": [f"{name} chain {i}" for i in range(batch_size)],
    }


def batch_size_for(length: int, batch_size: int | None, tokens_per_batch: int) -> int:
    """`batch_size` when given, else as many chains as fit `tokens_per_batch` residues (at least one)."""
    if batch_size is not None:
        return int(batch_size)
    return max(1, int(tokens_per_batch) // int(length))


class SyntheticBatches(Dataset):
    """`num_distinct` fixed batches, built once (seeded by seed and batch number) and served in turn for
    `num_batches` items, so no step waits for the host to generate data. Pinned batches reach the GPU by
    asynchronous copies (Lightning copies with non_blocking=True); a copy from pageable memory may wait for
    the GPU's queue, a host synchronisation every step.

    Args:
        length: residues per chain.
        batch_size: chains per batch.
        num_batches: items (batches) in one epoch.
        num_distinct: distinct batches actually generated and cycled through.
        seed: base seed.
        pin_memory: keep the batches in page-locked memory.
    """

    def __init__(
        self, length: int, batch_size: int, num_batches: int, num_distinct: int, seed: int, pin_memory: bool = False
    ):
        self.num_batches = int(num_batches)
        self.batches = []
        for i in range(min(int(num_distinct), self.num_batches)):
            generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
            batch = synthetic_batch(batch_size, length, generator, name=f"synthetic seed {seed} batch {i}")
            if pin_memory:
                batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            self.batches.append(batch)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> dict:
        return self.batches[index % len(self.batches)]


class SyntheticDataModule(pl.LightningDataModule):
    """Train/val loaders of synthetic chains of one length (see the module docstring).

    With several ranks (DDP), rank r takes items r, r+R, ... of the epoch, so every rank has the same
    number of batches (use `trainer.use_distributed_sampler=false`, as the configs do).

    Args:
        length: residues per chain.
        batch_size: chains per batch; None: `tokens_per_batch // length` (at least 1).
        tokens_per_batch: residue budget of a batch when batch_size is None.
        num_train_batches: training batches per epoch (per rank).
        num_val_batches: validation batches (per rank).
        num_distinct: distinct batches generated per split and cycled through.
        seed: seed of the chains.
        pin_memory: page-locked batches (only applied when CUDA is available).
    """

    def __init__(
        self,
        length: int = 256,
        batch_size: int | None = None,
        tokens_per_batch: int = 2048,
        num_train_batches: int = 1000,
        num_val_batches: int = 1,
        num_distinct: int = 4,
        seed: int = 0,
        pin_memory: bool = True,
    ):
        super().__init__()
        if int(length) < 2:
            raise ValueError(f"data.length={length}: synthetic chains need at least 2 residues")
        self.length = int(length)
        self.batch_size = batch_size_for(length, batch_size, tokens_per_batch)
        self.num_train_batches = int(num_train_batches)
        self.num_val_batches = int(num_val_batches)
        self.num_distinct = int(num_distinct)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.train_dataset: SyntheticBatches | None = None
        self.val_dataset: SyntheticBatches | None = None

    @property
    def residues_per_batch(self) -> int:
        return self.batch_size * self.length

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        world = self._world_size()
        self.train_dataset = SyntheticBatches(
            self.length, self.batch_size, self.num_train_batches * world, self.num_distinct, self.seed, self.pin_memory
        )
        self.val_dataset = SyntheticBatches(
            self.length, self.batch_size, self.num_val_batches * world, 1, self.seed + 1, self.pin_memory
        )

    def _world_size(self) -> int:
        trainer = getattr(self, "trainer", None)
        return trainer.world_size if trainer is not None else 1

    def _loader(self, dataset: SyntheticBatches | None) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call SyntheticDataModule.setup() before asking for a dataloader")
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        indices = list(range(rank, len(dataset), world))
        return DataLoader(dataset, batch_size=None, sampler=indices, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset)
