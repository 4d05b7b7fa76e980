"""dense_ipa: IPA over a full pair representation with FrameFlow's edge updates between blocks (O(L^2))."""

import torch.nn as nn

from flashipa_train.model.ipa import DenseIPA
from flashipa_train.model.pair_dense import EdgeEmbedder, EdgeTransition


class DenseIPAAttention(nn.Module):
    """The trunk's attention for `dense_ipa`: `prepare` builds z once, `forward` runs block b's IPA,
    `after_block` updates z with an edge transition (not after the last block).

    Args:
        c_s, c_hidden, num_heads, num_qk_points, num_v_points: IPA sizes
        num_blocks: trunk blocks
        c_z:        pair channels
    """

    def __init__(self, c_s, c_hidden, num_heads, num_qk_points, num_v_points, num_blocks, c_z):
        super().__init__()
        self.edge_embedder = EdgeEmbedder(c_s, c_z)
        self.ipa = nn.ModuleList(
            DenseIPA(c_s, c_z, c_hidden, num_heads, num_qk_points, num_v_points) for _ in range(num_blocks)
        )
        self.edge_transitions = nn.ModuleList(EdgeTransition(c_s, c_z) for _ in range(num_blocks - 1))

    def prepare(self, s0, rigids_in, inputs):
        """Pair state before the first block: {"z": [B, L, L, c_z]}."""
        z = self.edge_embedder(
            s0,
            inputs["trans_t"],
            inputs.get("trans_sc"),
            inputs["residue_index"],
            inputs["chain_index"],
            inputs["res_mask"],
        )
        return {"z": z}

    def forward(self, block, s, rigids, res_mask, state):
        """Block `block`'s IPA update [B, L, c_s]."""
        return self.ipa[block](s, rigids, state["z"], res_mask)

    def after_block(self, block, s, res_mask, state):
        if block < len(self.edge_transitions):
            state = {"z": self.edge_transitions[block](s, state["z"], res_mask)}
        return state
