"""Spatially sparse IPA: attention over cell-list neighbour lists (Triton kernels, torch reference)."""
