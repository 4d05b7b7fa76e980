"""Sampling backbones from a trained model: checkpoint loading, Euler integration, files and metrics."""

from flashipa_train.sampling.checkpoint_model import SamplerFromCheckpoint, load_sampler_from_checkpoint
from flashipa_train.sampling.generate import GeneratedBackbone, generate_backbones, pick_device

__all__ = [
    "GeneratedBackbone",
    "SamplerFromCheckpoint",
    "generate_backbones",
    "load_sampler_from_checkpoint",
    "pick_device",
]
