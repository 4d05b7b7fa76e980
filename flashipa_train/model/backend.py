"""Choice of the IPA attention backend ("auto" resolves per call from the device of the inputs).

"auto" is "sdpa" on CUDA and "torch" elsewhere. The Triton kernel is opt-in (backend: triton) until its
backward runs clean on the GPU: on the H100 image (Triton 3.6) the backward kernels still read shared
memory out of bounds at the anchor sizes (docs/kernel_notes.md).
"""

import torch

BACKENDS = ("auto", "triton", "sdpa", "torch")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"model.attention.backend={backend!r} is not one of {BACKENDS}; set it in configs/model/attention/*.yaml")
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """"auto" -> "sdpa" on CUDA, else "torch"; other names unchanged."""
    if backend != "auto":
        return backend
    return "sdpa" if device.type == "cuda" else "torch"
