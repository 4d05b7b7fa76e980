"""FLASHIPA_LLVM_OPT=O1: Triton's NVIDIA backend optimises the kernels' LLVM IR at O1 instead of O3.

A diagnosis switch for one upstream bug class. LLVM's jump threading (an O2/O3 pass) can give a block that
holds a convergent operation (a warp shuffle of a reduction, the barrier or `ldmatrix` of a layout change)
a new entry edge around the merge point where ptxas reconverges the warp. The operation then runs on a
partially converged warp and the kernel returns wrong values without a fault
(triton-lang/triton#11153, llvm/llvm-project#213868; fix in llvm/llvm-project#213870, 2026-08, after
Triton 3.6). The pattern it needs is a runtime-scalar branch or early return ahead of such an operation,
which the entmax threshold kernel has; it was a candidate for the GPU-only failures of docs/kernel_notes.md v6
and docs/benchmarks/entmax.md, but their PTX for sm_90 has the same control flow at O1 as at O3.

Set the variable before the first kernel compiles, with an empty TRITON_CACHE_DIR: the level is not part of
Triton's cache key. O1 has no jump threading; ptxas still optimises the PTX.
"""

import os

LEVELS = ("O0", "O1", "O2", "O3")
_applied = None  # the level patched in, once per process


def apply_from_env():
    """Patch the optimisation level of Triton's LLVM pipeline if FLASHIPA_LLVM_OPT names one (once; the kernel
    launch modules call this on import); returns the level in force."""
    global _applied
    level = os.environ.get("FLASHIPA_LLVM_OPT", "")
    if not level or _applied is not None:
        return _applied
    if level not in LEVELS:
        raise ValueError(f"kernels/llvm_opt_level.py: FLASHIPA_LLVM_OPT={level!r}; give one of {LEVELS}")
    from triton._C.libtriton import llvm

    chosen = getattr(llvm, f"OPTIMIZE_{level}")
    optimize_module = llvm.optimize_module

    def at_level(module, _level, *args, **kwargs):
        return optimize_module(module, chosen, *args, **kwargs)

    llvm.optimize_module = at_level
    _applied = level
    return level
