"""Per-block layers of the trunk besides attention: transition, sequence transformer, backbone update, psi head."""

import torch
import torch.nn as nn

from flashipa_train.geometry import Rigid
from flashipa_train.geometry.precision import geometry_precision


class Transition(nn.Module):
    """Node transition (AlphaFold2 Algorithm 23 lines 8-9 style): s <- LayerNorm(s + MLP(s)).

    Args:
        c_s:     single representation channels
        dropout: dropout on the MLP output
    """

    def __init__(self, c_s, dropout=0.0):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(c_s, c_s), nn.ReLU(), nn.Linear(c_s, c_s), nn.ReLU(), nn.Linear(c_s, c_s), nn.Dropout(dropout)
        )
        self.layer_norm = nn.LayerNorm(c_s)

    def forward(self, s):
        """s [B, L, c_s] -> [B, L, c_s]."""
        return self.layer_norm(s + self.mlp(s))


class SequenceTransformer(nn.Module):
    """Post-LN transformer encoder over the residues (FrameFlow), added back through a zero-initialised linear.

    Args:
        c_s:        single representation channels (model width and feed-forward width)
        num_layers: encoder layers
        num_heads:  attention heads
        dropout:    dropout inside the encoder layers
    """

    def __init__(self, c_s, num_layers, num_heads, dropout=0.0):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=c_s, nhead=num_heads, dim_feedforward=c_s, dropout=dropout, batch_first=True, norm_first=False
        )
        # no nested tensors: their fast path differs between train and eval and across torch versions
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.linear_out = nn.Linear(c_s, c_s)
        nn.init.zeros_(self.linear_out.weight)
        nn.init.zeros_(self.linear_out.bias)

    def forward(self, s, padding: torch.Tensor | None):
        """s [B, L, c_s], padding [B, L] bool (True: padded) or None (no padding) -> s + update [B, L, c_s].

        None lets scaled_dot_product_attention run unmasked (FlashAttention / cuDNN on a GPU; a padding mask
        sends it to the memory-efficient kernel)."""
        # [B, L, c_s]
        h = self.encoder(s, src_key_padding_mask=padding)
        return s + self.linear_out(h)


class BackboneUpdate(nn.Module):
    """AlphaFold2 Algorithm 23: per-residue update (b, c, d, t) composed onto the frames; quaternion (1, b, c, d).

    Zero-initialised, so a fresh block leaves the frames unchanged. Padded residues never move.
    """

    def __init__(self, c_s):
        super().__init__()
        self.linear = nn.Linear(c_s, 6)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, s, rigids: Rigid, res_mask) -> Rigid:
        """s [B, L, c_s], frames [B, L] (nm), res_mask [B, L] -> updated frames [B, L]."""
        # [B, L, 6]
        update = self.linear(s) * res_mask[..., None].to(s.dtype)
        with geometry_precision(update):
            return rigids.compose_update_vec(update.to(rigids.dtype))


class PsiHead(nn.Module):
    """Backbone torsion psi as an unnormalised (sin, cos) pair [B, L, 2] (FrameDiff's torsion head)."""

    def __init__(self, c_s):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(c_s, c_s), nn.ReLU(), nn.Linear(c_s, c_s))
        self.linear_out = nn.Linear(c_s, 2)

    def forward(self, s):
        """s [B, L, c_s] -> [B, L, 2]."""
        return self.linear_out(torch.relu(s + self.mlp(s)))
