"""Cubic cells of a grid hash over per-residue positions (shared by the neighbour search and the far field)."""

import torch


def cell_coordinates(pos, res_mask, cell_size):
    """Integer cell coordinates [B, L, 3] (long, >= 1 so that offset -1 stays >= 0) and the grid side G
    (a host sync: one per call). Padding sits in cell (1, 1, 1); callers mask it."""
    masked = pos.masked_fill(~res_mask[..., None], float("inf"))
    low = masked.amin(dim=1, keepdim=True)  # [B, 1, 3]
    low = torch.where(torch.isfinite(low), low, torch.zeros_like(low))
    cells = ((pos - low) / cell_size).floor().long().clamp(min=0) + 1
    cells = cells.masked_fill(~res_mask[..., None], 1)
    return cells, int(cells.max()) + 2


def cell_keys(batch, cells, G):
    """One int64 per (example, cell): batch [*] long, cells [*, 3] long."""
    return ((batch * G + cells[..., 0]) * G + cells[..., 1]) * G + cells[..., 2]
