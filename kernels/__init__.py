"""Triton kernels for IPA and their PyTorch references. Imports torch (and triton, lazily) only.

Imported as `flashipa_kernels` (setup.py maps the name to this folder; flashipa_kernels/__init__.py does the
same in a source checkout): `kernels` alone is a published package of its own."""
