"""The small interface every attention variant implements; FlowModel's trunk calls only these three.

    state = attention.prepare(s0, rigids_in, inputs)          # once per forward, before the first block
    s_update = attention(b, s, rigids, res_mask, state)        # block b's IPA update [B, L, c_s]
    state = attention.after_block(b, s, res_mask, state)       # between blocks (not after the last)

`State` is the variant's own typed tuple (DenseState, FlashState, ...); the trunk only carries it.
"""

from typing import Generic, TypeVar

import torch
import torch.nn as nn

from flashipa_kernels.backends import BACKENDS
from flashipa_train.geometry import Rigid
from flashipa_train.model.inputs import NoisyInputs

State = TypeVar("State")


class AttentionVariant(nn.Module, Generic[State]):
    """Base of the attention variants: a constructor `(sizes: IPASizes, *, <own fields>)` and the three steps."""

    backends: tuple[str, ...] = BACKENDS  # the `backend` names the variant accepts

    def prepare(self, s0: torch.Tensor, rigids_in: Rigid, inputs: NoisyInputs) -> State:
        """What every block reads: s0 [B, L, c_s], input frames [B, L] (nm), the model's inputs."""
        raise NotImplementedError

    def forward(self, block: int, s: torch.Tensor, rigids: Rigid, res_mask: torch.Tensor, state: State) -> torch.Tensor:
        """Block `block`'s IPA update [B, L, c_s] of s [B, L, c_s] with frames [B, L] (nm)."""
        raise NotImplementedError

    def after_block(self, block: int, s: torch.Tensor, res_mask: torch.Tensor, state: State) -> State:
        """The state the next block reads; unchanged unless the variant updates it between blocks."""
        return state
