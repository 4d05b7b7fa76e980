"""dense_ipa: IPA over a full pair representation with FrameFlow's edge updates between blocks (O(L^2))."""

from typing import NamedTuple

import torch
import torch.nn as nn

from flashipa_train.geometry import Rigid
from flashipa_train.model.attention_interface import AttentionVariant
from flashipa_train.model.inputs import NoisyInputs
from flashipa_train.model.ipa import DenseIPA
from flashipa_train.model.pair_dense import EdgeEmbedder, EdgeTransition
from flashipa_train.model.sizes import IPASizes


class DenseState(NamedTuple):
    """What dense_ipa's blocks share: the pair representation, updated between blocks."""

    z: torch.Tensor  # [B, L, L, c_z]


class DenseIPAAttention(AttentionVariant[DenseState]):
    """The trunk's attention for `dense_ipa`: `prepare` builds z once, `forward` runs block b's IPA,
    `after_block` updates z with an edge transition (not after the last block).

    Args:
        sizes:   the shared IPA sizes
        c_z:     pair channels of the pair representation
        backend: "torch", the only one (dense IPA has no kernel; any other name is an error, not ignored)
    """

    backends = ("torch",)

    def __init__(self, sizes: IPASizes, *, c_z=128, backend="torch"):
        super().__init__()
        if backend not in self.backends:
            raise ValueError(
                f"model.attention.backend={backend!r}: dense_ipa runs only 'torch' (no kernel takes a full pair "
                "representation); set backend: torch (configs/model/attention/dense_ipa.yaml)"
            )
        c_s = sizes.c_s
        self.edge_embedder = EdgeEmbedder(c_s, c_z)
        self.ipa = nn.ModuleList(
            DenseIPA(c_s, c_z, sizes.c_hidden, sizes.num_heads, sizes.num_qk_points, sizes.num_v_points)
            for _ in range(sizes.num_blocks)
        )
        self.edge_transitions = nn.ModuleList(EdgeTransition(c_s, c_z) for _ in range(sizes.num_blocks - 1))

    def prepare(self, s0: torch.Tensor, rigids_in: Rigid, inputs: NoisyInputs) -> DenseState:
        """The pair representation before the first block."""
        z = self.edge_embedder(
            s0,
            inputs["trans_t"],
            inputs.get("trans_sc"),
            inputs["residue_index"],
            inputs["chain_index"],
            inputs["res_mask"],
        )
        return DenseState(z)

    def forward(self, block: int, s: torch.Tensor, rigids: Rigid, res_mask: torch.Tensor, state: DenseState):
        """Block `block`'s IPA update [B, L, c_s]."""
        return self.ipa[block](s, rigids, state.z, res_mask)

    def after_block(self, block: int, s: torch.Tensor, res_mask: torch.Tensor, state: DenseState) -> DenseState:
        if block < len(self.edge_transitions):
            state = DenseState(self.edge_transitions[block](s, state.z, res_mask))
        return state
