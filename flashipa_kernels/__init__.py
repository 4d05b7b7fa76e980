"""`flashipa_kernels` from a source checkout: the import name of the top-level kernels/ folder.

Installed (`pip install .` or `-e .`), setup.py maps the package flashipa_kernels to kernels/ and this file is
not packaged. Run from the repository root without an install (PYTHONPATH=$PWD, as on the GPU machine),
Python finds this folder first; its search path is kernels/, so `flashipa_kernels.flash_ipa` is
kernels/flash_ipa either way. The name is ours because `kernels` is a published package of its own."""

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent.parent / "kernels")]
