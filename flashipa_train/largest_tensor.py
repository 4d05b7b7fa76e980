"""`LargestTensor`: records the largest tensor any ATen op takes or returns, to prove O(L) memory paths."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LargestTensor(TorchDispatchMode):
    """`with LargestTensor() as probe: ...` then `probe.numel` (elements), `probe.op` (the ATen op) and
    `probe.ops` (ops seen). Backward passes run under it are recorded too."""

    def __init__(self):
        super().__init__()
        self.numel, self.op, self.ops = 0, None, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        for x in tree_leaves((args, kwargs, out)):
            if isinstance(x, torch.Tensor) and x.numel() > self.numel:
                self.numel, self.op = x.numel(), str(func)
        return out
