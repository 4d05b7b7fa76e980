"""Per-residue input embedding: time step, residue index and chain (FrameFlow's node embedder, plus chains).

Every feature is a function of one residue only, so the embedding is O(L) and invariant to any
rigid motion of the input frames.
"""

import math

import torch
import torch.nn as nn


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """Transformer-style sin/cos features [*, dim] of real values x [*].

    Frequencies are geometric from 1 to 1 / max_period, so values up to ~max_period stay distinguishable.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / max(half, 1)
    ).to(x.dtype if x.is_floating_point() else torch.float32)  # [half]
    angles = x[..., None].to(freqs.dtype) * freqs  # [*, half]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [*, dim]


def normalised_residue_index(residue_index: torch.Tensor, res_mask: torch.Tensor) -> torch.Tensor:
    """residue_index [B, L] shifted so that each example's first real residue is 0 (padding -> 0).

    Structure files number residues arbitrarily (offsets, negative numbers); only differences matter.
    """
    big = torch.iinfo(residue_index.dtype).max
    first = residue_index.masked_fill(~res_mask, big).amin(dim=-1, keepdim=True)  # [B, 1]
    return (residue_index - first).masked_fill(~res_mask, 0)  # [B, L]


class NodeEmbedder(nn.Module):
    """Initial single representation s0 from t, residue index and chain index.

    Args:
        c_s:          single representation channels
        c_pos:        channels of the sinusoidal residue-index embedding
        c_time:       channels of the sinusoidal time-step embedding
        max_chains:   size of the chain embedding table; chain_index is taken modulo this
        max_len:      longest residue index the sinusoids resolve (period of the slowest one)
    """

    def __init__(self, c_s: int, c_pos: int = 128, c_time: int = 128, max_chains: int = 8, max_len: int = 2048):
        super().__init__()
        self.c_pos = c_pos
        self.c_time = c_time
        self.max_chains = max_chains
        self.max_len = max_len
        self.chain_embedding = nn.Embedding(max_chains, c_pos)
        self.linear = nn.Linear(2 * c_pos + c_time, c_s)

    def forward(self, t, residue_index, chain_index, res_mask):
        """
        Args:
            t:             [B]     flow time in [0, 1] (1 = data)
            residue_index: [B, L]  long
            chain_index:   [B, L]  long
            res_mask:      [B, L]  bool
        Returns:
            s0 [B, L, c_s], zero at padded residues
        """
        B, L = residue_index.shape
        # [B, L, c_pos]
        pos = sinusoidal_embedding(normalised_residue_index(residue_index, res_mask), self.c_pos, self.max_len)
        # [B, L, c_pos]
        chain = self.chain_embedding(chain_index % self.max_chains)
        # [B, L, c_time]; t scaled so the fastest sinusoid resolves steps of ~1e-3
        time = sinusoidal_embedding(t * 1000.0, self.c_time, 10000.0)[:, None].expand(B, L, -1)
        # [B, L, c_s]
        s0 = self.linear(torch.cat([pos.to(chain.dtype), chain, time.to(chain.dtype)], dim=-1))
        return s0 * res_mask[..., None].to(s0.dtype)
