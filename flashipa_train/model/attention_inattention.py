"""inattention: InAttention carried to IPA. Every block attends to keys, values and key/value points
projected (with that block's own weights) from the initial node embedding s0 and the input (noisy)
frames, all computed once per forward pass before the first block; only the queries follow the
block's current state and frames. Pair factors as in flash_ipa; same attention core and backends.
"""

from flashipa_train.model.attention_flash import FlashIPAAttention


class InAttentionIPAAttention(FlashIPAAttention):
    """The trunk's attention for `inattention` (args as `FlashIPAAttention`)."""

    def prepare(self, s0, rigids_in, inputs):
        state = super().prepare(s0, rigids_in, inputs)
        # one dict of k, v, k_pts, v_pts per block, from s0 and the input frames
        state["keys_values"] = [ipa.keys_values(s0, rigids_in) for ipa in self.ipa]
        return state

    def forward(self, block, s, rigids, res_mask, state):
        out = self.ipa[block](
            s,
            rigids,
            self._factors(block, s, state),
            res_mask,
            state["backend"],
            keys_values=state["keys_values"][block],
            all_real=state["all_real"],
            shared_points=state.get("shared_points"),
        )
        return out + self._edge_update(block, s, rigids, res_mask, state)
