"""Content-dependent relative-position bias of one trunk block, as exact low-rank factors (O(L) memory).

The pair factors of `pair_factors.py` give every head one fixed function of i - j, learned from zero
and shared by all blocks. Dense IPA's pair bias instead comes from z_ij = MLP(s_i, s_j, relpos, ...),
updated between blocks: how far along the chain a residue looks depends on what that residue is.
Here block b's bias is a relative-position profile whose per-head, per-frequency weights are read from
the query's current single representation s_i:

    b_hij = sum_f A_hf(s_i) cos(w_f (i - j)) + C_hf(s_i) sin(w_f (i - j)),   (A, C) = Linear(LayerNorm(s_i))

and by the angle-difference identities this is exactly the product of factors
    bias_q = (A cos w i + C sin w i,  A sin w i - C cos w i),   bias_k = (cos w j,  sin w j),
rank 2F per head, appended to the static factors; the attention kernel sees only a larger bias rank.
"""

import torch
import torch.nn as nn


class ContentRelposBias(nn.Module):
    """Block-wise relative-position bias factors with query-dependent weights (see the module docstring).

    Args:
        c_s:             single representation channels
        num_heads:       attention heads H
        num_frequencies: frequencies F of the index sinusoids (the pair factors' relpos frequencies)
    """

    def __init__(self, c_s: int, num_heads: int, num_frequencies: int):
        super().__init__()
        self.num_heads = num_heads
        self.num_frequencies = num_frequencies
        self.layer_norm = nn.LayerNorm(c_s)
        self.linear = nn.Linear(c_s, 2 * num_heads * num_frequencies)

    def forward(self, s, cos, sin):
        """s [B, L, c_s], cos and sin [B, L, F] of w_f i -> bias_q, bias_k [B, L, H, 2F]."""
        B, L, _ = s.shape
        # [B, L, H, F] each
        a, c = self.linear(self.layer_norm(s)).view(B, L, 2, self.num_heads, self.num_frequencies).unbind(2)
        cos, sin = cos[:, :, None].to(a.dtype), sin[:, :, None].to(a.dtype)  # [B, L, 1, F]
        bias_q = torch.cat([a * cos + c * sin, a * sin - c * cos], dim=-1)
        bias_k = torch.cat([cos, sin], dim=-1).expand(B, L, self.num_heads, -1)
        return bias_q, bias_k
