"""Sparse edge messages: FrameFlow's edge features on k neighbours per residue, an O(L k) node update per block.

The dense trunk sees, for every pair, the distances of the noisy (x_t) and self-conditioned (x_sc) CA
positions and an edge state updated between blocks. The flash trunk's pair path is low-rank; this
module gives it the same information on a sparse graph instead of an L x L one:

  neighbours (once per forward)  the sequence window i +- 1 .. i +- k_seq / 2 and the k_space nearest
                                 residues by x_sc (by x_t without self-conditioning), `neighbours.py`
  static edge features (once)    sinusoids of the residue-index offset, a same-chain flag, radial basis
                                 functions of the x_sc distance and a flag for it
  dynamic edge features          of the block's current frames: RBF of the CA distance, the direction
  (every block)                  of j in i's local frame, the relative rotation R_i^T R_j
  message                        m_ij = MLP(W_i s_i + W_j s_j + W_e e_ij), the masked mean over j, and a
                                 zero-initialised linear to c_s, added to the block's IPA output

All features are distances, local-frame directions and relative rotations: invariant to a global
rigid motion. Memory B x L x k x c_edge per block, never L x L.
"""

from typing import NamedTuple

import torch
import torch.nn as nn

from flashipa_train.geometry import Rigid, rotmat_mul
from flashipa_train.geometry.precision import geometry_precision
from flashipa_train.geometry.units import NM_TO_ANGSTROM
from flashipa_train.model.embeddings import sinusoidal_embedding
from flashipa_train.model.neighbours import gather_neighbours, knn_indices, radial_basis, window_indices

NUM_RELPOS = 16
NUM_RBF = 16
MAX_DISTANCE = 20.0  # Angstrom, the largest RBF centre


class EdgeGraph(NamedTuple):
    """Neighbours of every residue and the edge features that do not change across blocks."""

    idx: torch.Tensor  # [B, L, k] long
    valid: torch.Tensor  # [B, L, k] bool
    static: torch.Tensor  # [B, L, k, NUM_RELPOS + 1 + NUM_RBF + 1]


def build_edge_graph(trans_t, trans_sc, residue_index, chain_index, res_mask, k_seq, k_space) -> EdgeGraph:
    """Neighbour indices and static features; positions in Angstrom ([B, L, 3]; trans_sc may be None)."""
    seq_idx, seq_valid = window_indices(res_mask, k_seq)
    space_idx, space_valid = knn_indices(trans_t if trans_sc is None else trans_sc, res_mask, k_space)
    idx, valid = torch.cat([seq_idx, space_idx], dim=-1), torch.cat([seq_valid, space_valid], dim=-1)
    dtype = trans_t.dtype
    # [B, L, k]
    offset = (gather_neighbours(residue_index, idx) - residue_index[..., None]).to(dtype)
    same_chain = (gather_neighbours(chain_index, idx) == chain_index[..., None]).to(dtype)
    if trans_sc is None:
        rbf_sc = trans_t.new_zeros(*idx.shape, NUM_RBF)
        has_sc = torch.zeros_like(same_chain)
    else:
        d_sc = torch.linalg.vector_norm(gather_neighbours(trans_sc, idx) - trans_sc[:, :, None], dim=-1)
        rbf_sc = radial_basis(d_sc, 0.0, MAX_DISTANCE, NUM_RBF)
        has_sc = torch.ones_like(same_chain)
    static = torch.cat(
        [sinusoidal_embedding(offset, NUM_RELPOS, 256.0), same_chain[..., None], rbf_sc, has_sc[..., None]], dim=-1
    )
    return EdgeGraph(idx, valid, static)


def dynamic_edge_features(rigids: Rigid, idx):
    """Features [B, L, k, NUM_RBF + 3 + 9] of the current frames (nm): CA distance, direction, rotation."""
    with geometry_precision(rigids.trans):
        x = rigids.trans  # [B, L, 3] nm
        # [B, L, k, 3] neighbour positions in the local frame of residue i
        local = rigids[..., None].invert_apply(gather_neighbours(x, idx))
        d = torch.sqrt(local.square().sum(-1) + 1e-8)  # [B, L, k] nm
        # [B, L, k, 3, 3] relative rotations R_i^T R_j
        rel_rot = rotmat_mul(rigids.rots.transpose(-1, -2)[:, :, None], gather_neighbours(rigids.rots, idx))
        return torch.cat(
            [radial_basis(d * NM_TO_ANGSTROM, 0.0, MAX_DISTANCE, NUM_RBF), local / d[..., None], rel_rot.flatten(-2)],
            dim=-1,
        )


class EdgeMessages(nn.Module):
    """One block's sparse edge update [B, L, c_s] (see the module docstring).

    Args:
        c_s:    single representation channels
        c_edge: channels of the edge messages
    """

    def __init__(self, c_s: int, c_edge: int = 64):
        super().__init__()
        c_features = NUM_RELPOS + 1 + NUM_RBF + 1 + NUM_RBF + 3 + 9
        self.linear_i = nn.Linear(c_s, c_edge)
        self.linear_j = nn.Linear(c_s, c_edge, bias=False)
        self.linear_e = nn.Linear(c_features, c_edge, bias=False)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(c_edge, c_edge), nn.ReLU(), nn.Linear(c_edge, c_edge))
        self.linear_out = nn.Linear(c_edge, c_s)
        nn.init.zeros_(self.linear_out.weight)
        nn.init.zeros_(self.linear_out.bias)

    def forward(self, s, rigids: Rigid, graph: EdgeGraph, res_mask):
        """s [B, L, c_s], frames [B, L] (nm) -> [B, L, c_s], zero at padding."""
        # [B, L, k, c_features]
        edges = torch.cat([graph.static, dynamic_edge_features(rigids, graph.idx)], dim=-1).to(s.dtype)
        # [B, L, k, c_edge]
        h = self.linear_i(s)[:, :, None] + gather_neighbours(self.linear_j(s), graph.idx) + self.linear_e(edges)
        h = self.mlp(h)
        weights = graph.valid.to(h.dtype)[..., None]
        # [B, L, c_edge] masked mean over the neighbours
        h = (h * weights).sum(-2) / weights.sum(-2).clamp(min=1.0)
        return self.linear_out(h) * res_mask[..., None].to(h.dtype)
