"""Low-rank pair information for the flash path: per-residue factors whose products are the pair terms.

IPA uses pair information twice: a bias b_hij on the attention logits and pair values z_ij averaged
with the attention weights. Here both are given as sums of products of per-residue factors, so the
attention kernel never forms an L x L tensor (see kernels/reference/factorized_attention.py):

    b_hij = sum_r bias_q[i, h, r] * bias_k[j, h, r]        z_ij = sum_r pair_q[i, r] * pair_k[j, r]

The bias factors are the concatenation of three exact low-rank parts:

  learned (rank pair_rank)   bias_q = W_q s0_i, bias_k = W_k s0_j per head, from the initial node
                             embedding s0 (which already holds time, index, chain and kNN features).
  relative position          for frequencies w_f (periods geometric from 2 to 1000 residues) and
  (rank 2 per frequency)     per-head weights (a_hf, c_hf) the bias sum_f a_hf cos(w_f (i - j)) +
                             c_hf sin(w_f (i - j)) is, by the angle-difference identities,
                                 cos(w i) (a cos(w j) - c sin(w j)) + sin(w i) (c cos(w j) + a sin(w j)),
                             so bias_q = (cos w i, sin w i) and bias_k = (a cos w j - c sin w j,
                             c cos w j + a sin w j): a function of i - j only, exactly.
  same chain (rank K)        [chain_i == chain_j] = sum_c onehot(chain_i)_c onehot(chain_j)_c with K
                             = max_chains slots (chain index modulo K); per-head weight on the key side.

The pair values are learned rank-pair_rank factors pair_q = U_q s0_i, pair_k = U_k s0_j with
c_pair_value channels. All factors are computed once per forward pass and shared by the blocks.
"""

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from flashipa_train.model.embeddings import normalised_residue_index


class PairFactors(NamedTuple):
    """Per-residue factors of the pair bias and pair values (see the module docstring)."""

    bias_q: torch.Tensor  # [B, L, H, R_b]
    bias_k: torch.Tensor  # [B, L, H, R_b]
    pair_q: torch.Tensor  # [B, L, R_v, C_pv]
    pair_k: torch.Tensor  # [B, L, R_v, C_pv]


class PairFactorEmbedder(nn.Module):
    """Builds `PairFactors` from s0, residue index and chain index; O(L) memory.

    Args:
        c_s:                    single representation channels
        num_heads:              attention heads H
        pair_rank:              rank of the learned bias and value factors
        c_pair_value:           channels C_pv of the pair values
        num_relpos_frequencies: relative-position frequencies F (bias rank 2F)
        max_chains:             same-chain one-hot slots K (bias rank K)
    Bias rank R_b = pair_rank + 2F + K; value rank R_v = pair_rank.
    """

    def __init__(
        self,
        c_s: int,
        num_heads: int,
        pair_rank: int,
        c_pair_value: int,
        num_relpos_frequencies: int = 8,
        max_chains: int = 8,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.pair_rank = pair_rank
        self.c_pair_value = c_pair_value
        self.max_chains = max_chains
        periods = torch.logspace(math.log10(2.0), 3.0, num_relpos_frequencies)
        self.register_buffer("relpos_frequencies", 2 * math.pi / periods, persistent=False)  # [F]
        self.layer_norm = nn.LayerNorm(c_s)
        self.linear_bias = nn.Linear(c_s, 2 * num_heads * pair_rank)
        self.linear_pair = nn.Linear(c_s, 2 * pair_rank * c_pair_value)
        # [H, F] weights of cos(w (i - j)) and sin(w (i - j)); [H] weight of the same-chain flag
        self.relpos_cos_weight = nn.Parameter(torch.zeros(num_heads, num_relpos_frequencies))
        self.relpos_sin_weight = nn.Parameter(torch.zeros(num_heads, num_relpos_frequencies))
        self.same_chain_weight = nn.Parameter(torch.zeros(num_heads))

    relpos_frequencies: torch.Tensor  # [F] the buffer registered in __init__

    @property
    def bias_rank(self) -> int:
        return self.pair_rank + 2 * self.relpos_frequencies.numel() + self.max_chains

    def index_sinusoids(self, residue_index, res_mask, dtype):
        """cos(w_f i), sin(w_f i) [B, L, F] each, of the residue index i (first real residue 0)."""
        # [B, L, F]
        angles = normalised_residue_index(residue_index, res_mask)[..., None].to(dtype) * self.relpos_frequencies.to(
            dtype
        )
        return torch.cos(angles), torch.sin(angles)

    def forward(self, s0, residue_index, chain_index, res_mask) -> PairFactors:
        """
        Args:
            s0:            [B, L, c_s] initial node embedding
            residue_index: [B, L] long
            chain_index:   [B, L] long
            res_mask:      [B, L] bool
        """
        B, L, _ = s0.shape
        H, R = self.num_heads, self.pair_rank
        s = self.layer_norm(s0)
        # [B, L, H, R] each
        learned_q, learned_k = self.linear_bias(s).view(B, L, 2, H, R).unbind(2)
        # [B, L, R, C_pv] each
        pair_q, pair_k = self.linear_pair(s).view(B, L, 2, R, self.c_pair_value).unbind(2)

        # [B, L, 1, F] each
        cos, sin = (x[:, :, None] for x in self.index_sinusoids(residue_index, res_mask, s.dtype))
        a, c = self.relpos_cos_weight.to(s.dtype), self.relpos_sin_weight.to(s.dtype)  # [H, F]
        # [B, L, H, 2F]
        relpos_q = torch.cat([cos, sin], dim=-1).expand(B, L, H, -1)
        relpos_k = torch.cat([a * cos - c * sin, c * cos + a * sin], dim=-1)

        # [B, L, 1, K]
        onehot = F.one_hot(chain_index % self.max_chains, self.max_chains).to(s.dtype)[:, :, None]
        # [B, L, H, K]
        chain_q = onehot.expand(B, L, H, -1)
        chain_k = onehot * self.same_chain_weight.to(s.dtype)[:, None]

        return PairFactors(
            bias_q=torch.cat([learned_q, relpos_q, chain_q], dim=-1),  # [B, L, H, R_b]
            bias_k=torch.cat([learned_k, relpos_k, chain_k], dim=-1),  # [B, L, H, R_b]
            pair_q=pair_q,  # [B, L, R, C_pv]
            pair_k=pair_k,  # [B, L, R, C_pv]
        )
