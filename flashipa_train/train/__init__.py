"""Training: the Lightning module, its callbacks (EMA, non-finite guard), atomic checkpoint I/O and the CLI."""

from flashipa_train.checkpoint.weights import load_model_weights, model_weights_from_checkpoint
from flashipa_train.train.checkpoint_io import AtomicCheckpointIO, atomic_torch_save
from flashipa_train.train.ema import EMA
from flashipa_train.train.lr_schedule import WarmupCosineLR
from flashipa_train.train.module import FlowModule
from flashipa_train.train.nonfinite_guard import NonFiniteGuard

__all__ = [
    "AtomicCheckpointIO",
    "EMA",
    "FlowModule",
    "NonFiniteGuard",
    "WarmupCosineLR",
    "atomic_torch_save",
    "load_model_weights",
    "model_weights_from_checkpoint",
]
