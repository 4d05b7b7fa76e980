"""The full pair representation of the dense_ipa variant (FrameFlow's edge embedder and edge transition).

O(L^2) memory: the quality reference at short lengths, never used on the flash path.
z_ij is an MLP of: projected node features of i and j (concatenated), sinusoids of the residue-index
offset j - i, a same-chain flag, and radial basis features of the noisy CA distance |x_t_i - x_t_j| and
of the self-conditioning CA distance (zeros without one). All are invariant to a global rigid motion.
"""

import torch
import torch.nn as nn

from flashipa_train.model.embeddings import sinusoidal_embedding
from flashipa_train.model.neighbours import radial_basis


def _outer_concat(p):
    """p [B, L, c] -> [B, L, L, 2c] with (p_i, p_j) at (i, j)."""
    B, L, c = p.shape
    return torch.cat([p[:, :, None].expand(B, L, L, c), p[:, None, :].expand(B, L, L, c)], dim=-1)


def _pair_distances(x):
    """x [B, L, 3] -> |x_i - x_j| [B, L, L]."""
    return torch.linalg.vector_norm(x[:, :, None] - x[:, None, :], dim=-1)


class EdgeEmbedder(nn.Module):
    """Initial pair representation z [B, L, L, c_z].

    Args:
        c_s:          single representation channels
        c_z:          pair channels
        c_node:       channels of the projected node features (each of i and j)
        num_relpos:   sinusoid channels of the residue-index offset
        num_rbf:      radial basis functions per distance (0 to max_distance Angstrom)
        max_distance: largest RBF centre, Angstrom
    """

    def __init__(self, c_s, c_z, c_node=64, num_relpos=64, num_rbf=22, max_distance=20.0):
        super().__init__()
        self.num_relpos = num_relpos
        self.num_rbf = num_rbf
        self.max_distance = max_distance
        self.linear_node = nn.Linear(c_s, c_node)
        c_in = 2 * c_node + num_relpos + 1 + 2 * num_rbf + 1
        self.mlp = nn.Sequential(nn.Linear(c_in, c_z), nn.ReLU(), nn.Linear(c_z, c_z), nn.ReLU(), nn.Linear(c_z, c_z))
        self.layer_norm = nn.LayerNorm(c_z)

    def forward(self, s0, trans_t, trans_sc, residue_index, chain_index, res_mask):
        """
        Args:
            s0:        [B, L, c_s]
            trans_t:   [B, L, 3] Angstrom
            trans_sc:  [B, L, 3] Angstrom or None
            residue_index, chain_index: [B, L] long
            res_mask:  [B, L] bool
        Returns:
            z [B, L, L, c_z], zero where either residue is padding
        """
        dtype = s0.dtype
        # [B, L, L, 2 c_node]
        nodes = _outer_concat(self.linear_node(s0))
        # [B, L, L, num_relpos]
        relpos = sinusoidal_embedding(
            (residue_index[:, None, :] - residue_index[:, :, None]).to(dtype), self.num_relpos, 2048.0
        )
        # [B, L, L, 1]
        same_chain = (chain_index[:, :, None] == chain_index[:, None, :]).to(dtype)[..., None]
        # [B, L, L, num_rbf]
        rbf_t = radial_basis(_pair_distances(trans_t), 0.0, self.max_distance, self.num_rbf)
        if trans_sc is None:
            rbf_sc, has_sc = torch.zeros_like(rbf_t), torch.zeros_like(same_chain)
        else:
            rbf_sc, has_sc = (
                radial_basis(_pair_distances(trans_sc), 0.0, self.max_distance, self.num_rbf),
                torch.ones_like(same_chain),
            )
        # [B, L, L, c_z]
        z = self.layer_norm(self.mlp(torch.cat([nodes, relpos, same_chain, rbf_t, rbf_sc, has_sc], dim=-1)))
        pair_mask = (res_mask[:, :, None] & res_mask[:, None, :]).to(dtype)[..., None]
        return z * pair_mask


class EdgeTransition(nn.Module):
    """FrameFlow's edge update between blocks: z <- LayerNorm(z + MLP(z, p_i, p_j)), p = linear(s).

    Args:
        c_s:    single representation channels
        c_z:    pair channels
        c_node: channels of the projected node features
    """

    def __init__(self, c_s, c_z, c_node=64):
        super().__init__()
        self.linear_node = nn.Linear(c_s, c_node)
        self.mlp = nn.Sequential(
            nn.Linear(c_z + 2 * c_node, c_z), nn.ReLU(), nn.Linear(c_z, c_z), nn.ReLU(), nn.Linear(c_z, c_z)
        )
        self.layer_norm = nn.LayerNorm(c_z)

    def forward(self, s, z, res_mask):
        """s [B, L, c_s], z [B, L, L, c_z], res_mask [B, L] -> z [B, L, L, c_z]."""
        # [B, L, L, c_z + 2 c_node]
        h = torch.cat([z, _outer_concat(self.linear_node(s))], dim=-1)
        z = self.layer_norm(z + self.mlp(h))
        pair_mask = (res_mask[:, :, None] & res_mask[:, None, :]).to(z.dtype)[..., None]
        return z * pair_mask
