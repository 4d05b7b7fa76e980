"""flash_ipa: IPA with low-rank pair factors through `ipa_attention_core(..., backend)`; O(L) memory."""

import torch.nn as nn

from flashipa_train.model.backend import check_backend, resolve_backend
from flashipa_train.model.ipa import FactorizedIPA
from flashipa_train.model.pair_factors import PairFactorEmbedder


class FlashIPAAttention(nn.Module):
    """The trunk's attention for `flash_ipa`: pair factors from s0 once per forward, shared by all blocks.

    Args:
        c_s, c_hidden, num_heads, num_qk_points, num_v_points: IPA sizes
        num_blocks:   trunk blocks
        pair_rank:    rank of the learned pair-bias and pair-value factors
        c_pair_value: channels of the pair values
        backend:      "auto", "triton", "sdpa" or "torch"
    """

    def __init__(self, c_s, c_hidden, num_heads, num_qk_points, num_v_points, num_blocks, pair_rank, c_pair_value, backend="auto"):
        super().__init__()
        self.backend = check_backend(backend)
        self.pair_factors = PairFactorEmbedder(c_s, num_heads, pair_rank, c_pair_value)
        self.ipa = nn.ModuleList(
            FactorizedIPA(c_s, c_pair_value, c_hidden, num_heads, num_qk_points, num_v_points) for _ in range(num_blocks)
        )

    def prepare(self, s0, rigids_in, inputs):
        factors = self.pair_factors(s0, inputs["residue_index"], inputs["chain_index"], inputs["res_mask"])
        backend = resolve_backend(self.backend, s0.device)
        # SDPA keeps its flash kernel only without a mask: whether the batch is padded comes with the
        # inputs (`all_real`, read off the batch while it is still on the CPU) or is read here, once per
        # forward (a host sync, and a graph break under torch.compile outside the block loop), never in
        # every block. The other backends take the mask on the device.
        all_real = backend == "sdpa" and _all_real(inputs)
        return {"factors": factors, "backend": backend, "all_real": all_real}

    def forward(self, block, s, rigids, res_mask, state):
        return self.ipa[block](s, rigids, state["factors"], res_mask, state["backend"], all_real=state["all_real"])

    def after_block(self, block, s, res_mask, state):
        return state


def _all_real(inputs) -> bool:
    known = inputs.get("all_real")
    return bool(inputs["res_mask"].all()) if known is None else bool(known)
