"""Triton kernels for IPA and their PyTorch references. Imports torch (and triton, lazily) only.

Imported as `flashipa_kernels` (setup.py maps the name to this folder; flashipa_kernels/__init__.py does the
same in a source checkout): `kernels` alone is a published package of its own."""

from .llvm_opt_level import apply_from_env as _apply_llvm_opt_level

_apply_llvm_opt_level()  # FLASHIPA_LLVM_OPT (a diagnosis switch, unset by default): see llvm_opt_level.py
