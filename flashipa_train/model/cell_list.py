"""Neighbour lists of spatially sparse IPA from a cell list (grid hash): no L x L distance matrix.

Residues are hashed into cubic cells of edge `cell_size` by their frame translations; one sort groups
each cell's residues and `searchsorted` finds a cell's run, so building the grid costs O(L log L) and
each query looks only at the 27 cells around its own. Every residue within `cell_size` of a query lies
in those 27 cells; the lists keep the k nearest of those within `cell_size` (the radius), exactly, so
they do not depend on where the grid lies (invariant to a global rigid motion).

A cell with more than `max_per_cell` residues (the noise frames of early flow times, which are much
denser than a protein) contributes an evenly strided subset of `max_per_cell` of them: the list is then
the k nearest among a subsample, still local (and no longer invariant to a rigid motion of the grid).

The list of residue i is [i, its k nearest (itself excluded), its sequence window i +- 1 .. i +- w in
the same chain (`neighbours.window_indices`), minus what the kNN part already holds], as token indices
into the flattened batch, -1 where empty.
"""

from typing import NamedTuple

import torch

from flashipa_kernels.spatial_ipa.grid import cell_coordinates, cell_keys
from flashipa_train.model.neighbours import window_indices

QUERY_CHUNK = 16384  # queries per chunk of the candidate search: chunk x 27 x max_per_cell candidates

# [27, 3] the offsets of a cell's neighbourhood
_OFFSETS = torch.stack(torch.meshgrid(*[torch.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)


class NeighbourLists(NamedTuple):
    """Per-residue key lists of spatially sparse attention (token indices into the flattened [B * L] batch)."""

    index: torch.Tensor  # type: ignore[assignment]  # [B * L, 1 + k + 2w] int32, -1 where empty (shadows tuple.index)
    knn_radius: torch.Tensor  # [B * L] distance of the farthest kNN entry (0 if none), units of pos
    outside_radius: torch.Tensor  # [B * L] every key not in the list lies at least this far (0: no guarantee)


@torch.no_grad()
def knn_from_cell_list(pos, res_mask, k, cell_size, max_per_cell=64, chunk=QUERY_CHUNK):
    """The k nearest real residues within `cell_size` of every residue (itself excluded).

    Args:
        pos:          [B, L, 3] frame translations
        res_mask:     [B, L] bool
        k:            neighbours per residue
        cell_size:    cell edge, units of pos
        max_per_cell: candidates taken from one cell at most (strided subset beyond)
    Returns:
        idx [B * L, k] long token indices (-1 where fewer were found), dist [B * L, k], complete [B * L] bool
    """
    B, L, _ = pos.shape
    T = B * L
    device = pos.device
    pos = pos.detach()
    cells, G = cell_coordinates(pos, res_mask, cell_size)
    batch = torch.arange(B, device=device)[:, None].expand(B, L)
    # padding gets a key no cell has, so it never fills a neighbourhood's slots
    keys = cell_keys(batch, cells, G).masked_fill(~res_mask, -1).reshape(T)  # [T]
    sorted_keys, order = keys.sort()
    flat_pos = pos.reshape(T, 3)
    flat_mask = res_mask.reshape(T)
    offsets = _OFFSETS.to(device)
    # slots per cell: the fullest cell's count when below the cap (a host sync; protein-like density
    # fills ~15 per cell, so candidates stay ~27 x 15 per query)
    max_per_cell = min(max_per_cell, int(torch.unique_consecutive(sorted_keys, return_counts=True)[1].max()))
    slots = torch.arange(max_per_cell, device=device)  # [M]

    idx_out = torch.full((T, k), -1, dtype=torch.long, device=device)
    dist_out = torch.full((T, k), float("inf"), dtype=pos.dtype, device=device)
    complete = torch.ones(T, dtype=torch.bool, device=device)
    flat_cells, flat_batch = cells.reshape(T, 3), batch.reshape(T)
    for qs in range(0, T, chunk):
        qe = min(qs + chunk, T)
        # [c, 27] keys of the neighbourhood cells
        nkeys = cell_keys(flat_batch[qs:qe, None], flat_cells[qs:qe, None] + offsets, G)
        start = torch.searchsorted(sorted_keys, nkeys)
        count = torch.searchsorted(sorted_keys, nkeys, right=True) - start
        complete[qs:qe] = (count <= max_per_cell).all(-1)
        # [c, 27, M] strided slots of every cell, valid below its count
        take = torch.minimum(count, torch.full_like(count, max_per_cell))
        pick = start[..., None] + (slots * count[..., None]) // take.clamp(min=1)[..., None]
        valid = slots < take[..., None]
        cand = order[pick.clamp(max=T - 1)].reshape(qe - qs, -1)  # [c, 27 M]
        valid = valid.reshape(qe - qs, -1) & flat_mask[cand] & (cand != torch.arange(qs, qe, device=device)[:, None])
        d = (flat_pos[cand] - flat_pos[qs:qe, None]).norm(dim=-1)
        # beyond cell_size the candidates depend on the grid's placement: dropped, so that the lists
        # are invariant to a global rigid motion
        d = d.masked_fill(~valid | (d > cell_size), float("inf"))
        kk = min(k, d.shape[-1])
        dist, j = d.topk(kk, dim=-1, largest=False)
        found = torch.isfinite(dist) & flat_mask[qs:qe, None]
        idx_out[qs:qe, :kk] = torch.where(found, cand.gather(1, j), -1)
        dist_out[qs:qe, :kk] = dist.masked_fill(~found, float("inf"))
    return idx_out, dist_out, complete


@torch.no_grad()
def spatial_neighbour_lists(pos, res_mask, residue_index, chain_index, k, window, cell_size, max_per_cell=64):
    """Key lists [self, k nearest, sequence window] of every residue (see the module docstring).

    Args:
        pos:           [B, L, 3] frame translations
        res_mask:      [B, L] bool
        residue_index: [B, L] long (only its order matters: the window runs over positions i +- 1 .. w)
        chain_index:   [B, L] long (the window stays within a chain)
        k:             nearest neighbours
        window:        sequence neighbours on each side
        cell_size:     cell edge of the grid hash, units of pos
    """
    B, L, _ = pos.shape
    T = B * L
    device = pos.device
    knn, dist, complete = knn_from_cell_list(pos, res_mask, k, cell_size, max_per_cell)
    knn_radius = torch.where(knn >= 0, dist, torch.zeros_like(dist)).amax(-1)  # [T]
    tokens = torch.arange(T, device=device)
    self_idx = torch.where(res_mask.reshape(T), tokens, -1)[:, None]  # [T, 1]
    parts = [self_idx, knn]
    if window > 0:
        w_idx, w_valid = window_indices(res_mask, 2 * window)  # [B, L, 2w] positions within the example
        same_chain = torch.gather(chain_index, 1, w_idx.reshape(B, -1)).view_as(w_idx) == chain_index[..., None]
        w_tok = (w_idx + (torch.arange(B, device=device) * L)[:, None, None]).reshape(T, -1)
        w_tok = torch.where((w_valid & same_chain).reshape(T, -1), w_tok, -1)
        duplicate = (w_tok[:, :, None] == knn[:, None, :]).any(-1)  # [T, 2w]
        parts.append(w_tok.masked_fill(duplicate, -1))
    # a full kNN part excludes only keys beyond its farthest entry, a short one every key within the
    # radius; a capped cell (noise frames) may have hidden any key
    full = (knn >= 0).sum(-1) == k
    outside = torch.where(full, knn_radius, torch.full_like(knn_radius, cell_size))
    outside = torch.where(complete & res_mask.reshape(T), outside, torch.zeros_like(outside))
    return NeighbourLists(torch.cat(parts, dim=-1).to(torch.int32), knn_radius, outside)
