"""Out-of-bounds detection for Triton kernels under TRITON_INTERPRET=1.

On a GPU a load past the end of a tensor either faults (an illegal memory access that poisons the CUDA
context) or silently reads a neighbouring allocation; the interpreter reads host memory and does neither.
`checked_memory()` makes the interpreter check every active (unmasked) lane of every load and store: its
address must lie inside the storage of one of the kernel's tensor arguments.

    with checked_memory():
        run_the_kernels()   # AssertionError naming the kernel, the op and the first bad address
"""

from __future__ import annotations

import contextlib

import numpy as np
from triton.runtime import interpreter

_RANGES: list[tuple[int, int]] = []  # [start, end) byte ranges of the running kernel's tensor storages
_KERNEL = [""]


def _storages(args):
    for arg in args:
        if isinstance(arg, tuple):
            yield from _storages(arg)
        elif hasattr(arg, "untyped_storage"):
            yield arg.untyped_storage()


def _check(ptrs, mask, nbytes, op):
    active = ptrs.data[np.broadcast_to(mask.data, ptrs.data.shape)].astype(np.uint64)
    if active.size == 0:
        return
    inside = np.zeros(active.shape, dtype=bool)
    for start, end in _RANGES:
        inside |= (active >= start) & (active + nbytes <= end)
    if not inside.all():
        bad = int(active[~inside][0])
        near = min(_RANGES, key=lambda r: min(abs(bad - r[0]), abs(bad - r[1])))
        raise AssertionError(
            f"{_KERNEL[0]}: {op} of {int((~inside).sum())} lane(s) outside every tensor argument "
            f"(first at {bad:#x}; nearest storage [{near[0]:#x}, {near[1]:#x}))"
        )


@contextlib.contextmanager
def checked_memory():
    init_args = interpreter.GridExecutor._init_args_hst
    load = interpreter.InterpreterBuilder.create_masked_load
    store = interpreter.InterpreterBuilder.create_masked_store

    def init_args_checked(self, args_dev, kwargs):
        args_hst, kwargs_hst = init_args(self, args_dev, kwargs)
        _RANGES[:] = [(s.data_ptr(), s.data_ptr() + s.nbytes()) for s in _storages([*args_hst, *kwargs_hst.values()])]
        _KERNEL[0] = getattr(self.fn, "__name__", str(self.fn))
        return args_hst, kwargs_hst

    def load_checked(self, ptrs, mask, other, cache_policy, is_volatile):
        _check(ptrs, mask, interpreter._get_np_dtype(ptrs.get_element_ty()).itemsize, "load")
        return load(self, ptrs, mask, other, cache_policy, is_volatile)

    def store_checked(self, ptrs, value, mask, cache_policy):
        _check(ptrs, mask, value.data.itemsize, "store")
        return store(self, ptrs, value, mask, cache_policy)

    interpreter.GridExecutor._init_args_hst = init_args_checked
    interpreter.InterpreterBuilder.create_masked_load = load_checked
    interpreter.InterpreterBuilder.create_masked_store = store_checked
    try:
        yield
    finally:
        interpreter.GridExecutor._init_args_hst = init_args
        interpreter.InterpreterBuilder.create_masked_load = load
        interpreter.InterpreterBuilder.create_masked_store = store
