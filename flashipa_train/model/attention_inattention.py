"""inattention: InAttention carried to IPA. Every block attends to keys, values and key/value points
projected (with that block's own weights) from the initial node embedding s0 and the input (noisy)
frames, all computed once per forward pass before the first block; only the queries follow the
block's current state and frames. Pair factors as in flash_ipa; same attention core and backends.
"""

from typing import cast

import torch

from flashipa_train.geometry import Rigid
from flashipa_train.model.attention_flash import FlashIPAAttention, FlashState
from flashipa_train.model.inputs import NoisyInputs
from flashipa_train.model.ipa import FactorizedIPA


class InAttentionIPAAttention(FlashIPAAttention):
    """The trunk's attention for `inattention` (args as `FlashIPAAttention`)."""

    def prepare(self, s0: torch.Tensor, rigids_in: Rigid, inputs: NoisyInputs) -> FlashState:
        state = super().prepare(s0, rigids_in, inputs)
        # one dict of k, v, k_pts, v_pts per block, from s0 and the input frames; `forward` attends to them
        return state._replace(keys_values=[cast(FactorizedIPA, ipa).keys_values(s0, rigids_in) for ipa in self.ipa])
