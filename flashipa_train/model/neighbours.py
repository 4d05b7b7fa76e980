"""Sparse per-residue neighbourhoods (O(L k), never L x L) and the node features aggregated over them.

Each residue i gets k neighbours j:
  - with self-conditioning positions x_sc (the model's previous guess of the clean CA positions): the k
    nearest real residues by |x_sc_i - x_sc_j|, found in query chunks so that at most chunk x L
    distances exist at a time;
  - without them: the sequence window j = i +- 1 .. i +- k/2 (clipped at the ends, padding dropped).
For every (i, j) the edge features are: sinusoids of the residue-index offset, a same-chain flag,
radial basis functions of the noisy distance |x_t_i - x_t_j| and of the self-conditioning distance
(zeros without one) and a flag for the latter. An MLP maps each edge to c_s channels and a masked mean
over the neighbours gives one vector per residue: all distances, so the features are invariant to a
global rigid motion.
"""

import torch
import torch.nn as nn

from flashipa_train.model.embeddings import sinusoidal_embedding

KNN_QUERY_CHUNK = 128  # queries per chunk of the kNN search: chunk x L distances in memory


def knn_indices(pos, res_mask, k, chunk=KNN_QUERY_CHUNK):
    """The k nearest real residues of every residue (itself excluded), by Euclidean distance.

    Args:
        pos:      [B, L, 3] positions
        res_mask: [B, L] bool
        k:        neighbours per residue (fewer real residues: the rest are marked invalid)
    Returns:
        idx [B, L, k] long, valid [B, L, k] bool
    """
    B, L, _ = pos.shape
    k_eff = min(k, L)
    pos = pos.detach()
    idx_chunks, valid_chunks = [], []
    with torch.no_grad():
        for qs in range(0, L, chunk):
            qe = min(qs + chunk, L)
            # [B, c, L]
            d2 = (pos[:, qs:qe, None, :] - pos[:, None, :, :]).square().sum(-1)
            is_self = torch.arange(qs, qe, device=pos.device)[:, None] == torch.arange(L, device=pos.device)
            d2 = d2.masked_fill(~res_mask[:, None, :] | is_self[None], float("inf"))
            # [B, c, k]
            vals, idx = d2.topk(k_eff, dim=-1, largest=False)
            idx_chunks.append(idx)
            valid_chunks.append(torch.isfinite(vals) & res_mask[:, qs:qe, None])
    idx, valid = torch.cat(idx_chunks, dim=1), torch.cat(valid_chunks, dim=1)
    if k_eff < k:  # pad to k columns so shapes do not depend on L
        idx = torch.cat([idx, idx.new_zeros(B, L, k - k_eff)], dim=-1)
        valid = torch.cat([valid, valid.new_zeros(B, L, k - k_eff)], dim=-1)
    return idx, valid


def window_indices(res_mask, k):
    """Sequence neighbours i +- 1 .. i +- ceil(k/2), truncated to k: idx [B, L, k] long, valid [B, L, k] bool."""
    B, L = res_mask.shape
    half = (k + 1) // 2
    steps = torch.arange(1, half + 1, device=res_mask.device)
    # [k] offsets -1, +1, -2, +2, ...
    offsets = torch.stack([-steps, steps], dim=-1).flatten()[:k]
    # [L, k]
    j = torch.arange(L, device=res_mask.device)[:, None] + offsets
    inside = (j >= 0) & (j < L)
    j = j.clamp(0, L - 1)
    idx = j[None].expand(B, L, k)
    # [B, L, k]
    valid = inside[None] & torch.gather(res_mask, 1, idx.reshape(B, L * k)).view(B, L, k) & res_mask[..., None]
    return idx, valid


def gather_neighbours(x, idx):
    """x [B, L, *] at neighbour indices idx [B, L, k] -> [B, L, k, *]."""
    B, L, k = idx.shape
    flat = idx.reshape(B, L * k)
    gathered = torch.gather(x, 1, flat.view(B, L * k, *([1] * (x.dim() - 2))).expand(B, L * k, *x.shape[2:]))
    return gathered.view(B, L, k, *x.shape[2:])


def radial_basis(d, d_min, d_max, num):
    """Gaussian radial basis features [*, num] of distances d [*], centres evenly spaced in [d_min, d_max]."""
    centres = torch.linspace(d_min, d_max, num, dtype=d.dtype, device=d.device)
    width = (d_max - d_min) / num
    return torch.exp(-(((d[..., None] - centres) / width) ** 2))


class NeighbourFeatures(nn.Module):
    """Per-residue features [B, L, c_s] aggregated over k neighbours (see the module docstring).

    Args:
        c_s:              single representation channels (output)
        k:                neighbours per residue
        num_relpos:       sinusoid channels of the residue-index offset
        num_rbf:          radial basis functions per distance (0 to max_distance Angstrom)
        max_distance:     largest RBF centre, Angstrom
    """

    def __init__(self, c_s: int, k: int = 16, num_relpos: int = 16, num_rbf: int = 16, max_distance: float = 20.0):
        super().__init__()
        self.k = k
        self.num_relpos = num_relpos
        self.num_rbf = num_rbf
        self.max_distance = max_distance
        c_edge = num_relpos + 1 + 2 * num_rbf + 1
        self.edge_mlp = nn.Sequential(nn.Linear(c_edge, c_s), nn.ReLU(), nn.Linear(c_s, c_s))
        self.layer_norm = nn.LayerNorm(c_s)

    def forward(self, trans_t, trans_sc, residue_index, chain_index, res_mask):
        """
        Args:
            trans_t:       [B, L, 3] noisy CA positions, Angstrom
            trans_sc:      [B, L, 3] self-conditioning CA positions, Angstrom, or None
            residue_index: [B, L] long
            chain_index:   [B, L] long
            res_mask:      [B, L] bool
        Returns:
            [B, L, c_s], zero at padded residues
        """
        if trans_sc is None:
            idx, valid = window_indices(res_mask, self.k)
        else:
            idx, valid = knn_indices(trans_sc, res_mask, self.k)
        dtype = trans_t.dtype
        # [B, L, k]
        offset = gather_neighbours(residue_index, idx) - residue_index[..., None]
        same_chain = (gather_neighbours(chain_index, idx) == chain_index[..., None]).to(dtype)
        # [B, L, k]
        d_t = torch.linalg.vector_norm(gather_neighbours(trans_t, idx) - trans_t[:, :, None], dim=-1)
        if trans_sc is None:
            rbf_sc = torch.zeros(*idx.shape, self.num_rbf, dtype=dtype, device=trans_t.device)
            has_sc = torch.zeros_like(same_chain)
        else:
            d_sc = torch.linalg.vector_norm(gather_neighbours(trans_sc, idx) - trans_sc[:, :, None], dim=-1)
            rbf_sc = radial_basis(d_sc, 0.0, self.max_distance, self.num_rbf)
            has_sc = torch.ones_like(same_chain)
        # [B, L, k, c_edge]
        edges = torch.cat(
            [
                sinusoidal_embedding(offset.to(dtype), self.num_relpos, 256.0),
                same_chain[..., None],
                radial_basis(d_t, 0.0, self.max_distance, self.num_rbf),
                rbf_sc,
                has_sc[..., None],
            ],
            dim=-1,
        )
        # [B, L, k, c_s]
        h = self.edge_mlp(edges)
        weights = valid.to(h.dtype)[..., None]
        # [B, L, c_s] masked mean over neighbours
        h = (h * weights).sum(-2) / weights.sum(-2).clamp(min=1.0)
        return self.layer_norm(h) * res_mask[..., None].to(h.dtype)
