"""inattention: InAttention carried to IPA. Every block attends to keys, values and key/value points
projected (with that block's own weights) from the initial node embedding s0 and the input (noisy)
frames, all computed once per forward pass before the first block; only the queries follow the
block's current state and frames. Pair factors as in flash_ipa; same attention core and backends.
"""

import torch.nn as nn

from flashipa_train.model.backend import check_backend, resolve_backend
from flashipa_train.model.ipa import FactorizedIPA
from flashipa_train.model.pair_factors import PairFactorEmbedder


class InAttentionIPAAttention(nn.Module):
    """The trunk's attention for `inattention` (args as `FlashIPAAttention`)."""

    def __init__(self, c_s, c_hidden, num_heads, num_qk_points, num_v_points, num_blocks, pair_rank, c_pair_value, backend="auto"):
        super().__init__()
        self.backend = check_backend(backend)
        self.pair_factors = PairFactorEmbedder(c_s, num_heads, pair_rank, c_pair_value)
        self.ipa = nn.ModuleList(
            FactorizedIPA(c_s, c_pair_value, c_hidden, num_heads, num_qk_points, num_v_points) for _ in range(num_blocks)
        )

    def prepare(self, s0, rigids_in, inputs):
        factors = self.pair_factors(s0, inputs["residue_index"], inputs["chain_index"], inputs["res_mask"])
        # one dict of k, v, k_pts, v_pts per block, from s0 and the input frames
        keys_values = [ipa.keys_values(s0, rigids_in) for ipa in self.ipa]
        return {"factors": factors, "keys_values": keys_values, "backend": resolve_backend(self.backend, s0.device)}

    def forward(self, block, s, rigids, res_mask, state):
        return self.ipa[block](
            s, rigids, state["factors"], res_mask, state["backend"], keys_values=state["keys_values"][block]
        )

    def after_block(self, block, s, res_mask, state):
        return state
