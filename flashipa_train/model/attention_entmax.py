"""entmax_ipa: flash_ipa's factorized IPA with alpha-entmax attention weights instead of softmax.

The logits are flash_ipa's (scalar, point and low-rank pair-bias terms, pair factors from s0 shared
by all blocks); each head's weights are p_ij = [(alpha_h - 1) s_ij - tau_i]_+^(1 / (alpha_h - 1)),
exactly zero for residues whose logit is more than about 1 / (alpha_h - 1) below the row's best
(far residues under the point term), and the kernel skips key blocks that are all zero
(kernels/entmax_ipa). alpha -> 1 is softmax, alpha = 2 sparsemax.
"""

import math
from typing import NamedTuple

import torch
import torch.nn as nn

from flashipa_kernels.entmax_ipa import entmax_ipa_attention, tiled_entmax_ipa_attention
from flashipa_train.geometry import Rigid
from flashipa_train.model.attention_interface import AttentionVariant
from flashipa_train.model.inputs import NoisyInputs
from flashipa_train.model.ipa import IPAProjections
from flashipa_train.model.pair_factors import PairFactorEmbedder, PairFactors
from flashipa_train.model.sizes import IPASizes

BACKENDS = ("auto", "triton", "torch")
ALPHA_MIN = 1.05  # a learned alpha stays in (ALPHA_MIN, 2): 1 / (alpha - 1) grows without bound near 1


class EntmaxIPA(IPAProjections):
    """One block's IPA with alpha-entmax weights over `PairFactors` (never L x L).

    Args (beyond IPAProjections'):
        alpha:       entmax alpha of every head at initialisation, in (1, 2]
        learn_alpha: learn one alpha per head, alpha_h = ALPHA_MIN + (2 - ALPHA_MIN) sigmoid(a_h)
    """

    def __init__(self, c_s, c_pair, c_hidden, num_heads, num_qk_points, num_v_points, alpha=1.5, learn_alpha=False):
        super().__init__(c_s, c_pair, c_hidden, num_heads, num_qk_points, num_v_points)
        if not 1.0 < alpha <= 2.0 or (learn_alpha and not ALPHA_MIN < alpha < 2.0):
            raise ValueError(
                f"model.attention.alpha={alpha}: pick 1 < alpha <= 2 (learn_alpha: {ALPHA_MIN} < alpha < 2) "
                "in configs/model/attention/entmax_ipa.yaml"
            )
        self.learn_alpha = learn_alpha
        if learn_alpha:
            x = (alpha - ALPHA_MIN) / (2.0 - ALPHA_MIN)
            self.alpha_logit = nn.Parameter(torch.full((num_heads,), math.log(x / (1.0 - x))))
        else:
            self.register_buffer("fixed_alpha", torch.full((num_heads,), float(alpha)), persistent=False)

    def alpha(self):
        """[H] entmax alpha per head."""
        if self.learn_alpha:
            return ALPHA_MIN + (2.0 - ALPHA_MIN) * torch.sigmoid(self.alpha_logit.float())
        return self.fixed_alpha

    def forward(self, s, rigids: Rigid, factors: PairFactors, res_mask, backend="torch"):
        """s [B, L, c_s], rigids [B, L] (nm), res_mask [B, L] bool, backend "triton" | "torch" -> [B, L, c_s]."""
        q, q_pts = self.queries(s, rigids)
        kv = self.keys_values(s, rigids)
        core = entmax_ipa_attention if backend == "triton" else tiled_entmax_ipa_attention
        # [B, L, H, C], [B, L, H, P_v, 3], [B, L, H, R, c_pair]
        o, o_pts, o_pair_r = core(
            q,
            kv["k"],
            kv["v"],
            q_pts,
            kv["k_pts"],
            kv["v_pts"],
            factors.bias_q,
            factors.bias_k,
            factors.pair_k,
            self.point_weights(),
            self.alpha(),
            res_mask,
        )
        # [B, L, H, c_pair]
        o_pair = torch.einsum("birc,bihrc->bihc", factors.pair_q.to(o_pair_r.dtype), o_pair_r)
        return self.output(o, o_pts, o_pair, rigids, res_mask)


class EntmaxState(NamedTuple):
    """What entmax_ipa's blocks share, built once per forward by `prepare`."""

    factors: PairFactors  # pair factors from s0
    backend: str  # resolved: "triton" or "torch"


class EntmaxIPAAttention(AttentionVariant[EntmaxState]):
    """The trunk's attention for `entmax_ipa`: pair factors from s0 once per forward, shared by all blocks.

    Args:
        sizes:        the shared IPA sizes
        pair_rank:    rank of the learned pair-bias and pair-value factors
        c_pair_value: channels of the pair values
        backend:      "auto" (triton on CUDA, torch elsewhere), "triton" or "torch"
        alpha:        entmax alpha (every head and block at initialisation)
        learn_alpha:  learn alpha per head and block
    """

    backends = BACKENDS

    def __init__(self, sizes: IPASizes, *, pair_rank=2, c_pair_value=32, backend="auto", alpha=1.5, learn_alpha=False):
        super().__init__()
        if backend not in self.backends:
            raise ValueError(
                f"model.attention.backend={backend!r} is not one of {BACKENDS} for entmax_ipa; set it in "
                "configs/model/attention/entmax_ipa.yaml"
            )
        self.backend = backend
        self.pair_factors = PairFactorEmbedder(sizes.c_s, sizes.num_heads, pair_rank, c_pair_value)
        self.ipa = nn.ModuleList(
            EntmaxIPA(
                sizes.c_s,
                c_pair_value,
                sizes.c_hidden,
                sizes.num_heads,
                sizes.num_qk_points,
                sizes.num_v_points,
                alpha,
                learn_alpha,
            )
            for _ in range(sizes.num_blocks)
        )

    def prepare(self, s0: torch.Tensor, rigids_in: Rigid, inputs: NoisyInputs) -> EntmaxState:
        factors = self.pair_factors(s0, inputs["residue_index"], inputs["chain_index"], inputs["res_mask"])
        backend = self.backend
        if backend == "auto":
            backend = "triton" if s0.device.type == "cuda" else "torch"
        return EntmaxState(factors, backend)

    def forward(self, block: int, s: torch.Tensor, rigids: Rigid, res_mask: torch.Tensor, state: EntmaxState):
        return self.ipa[block](s, rigids, state.factors, res_mask, state.backend)
