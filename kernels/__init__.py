"""Triton kernels for IPA and their PyTorch references. Imports torch (and triton, lazily) only."""
