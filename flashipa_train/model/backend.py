"""Choice of the IPA attention backend ("auto" resolves per call from the device of the inputs).

"auto" is "sdpa" on CUDA and "torch" elsewhere. The Triton kernel (backend: triton) is opt-in: it runs
clean on the GPU (H200, Triton 3.6) and needs less memory, but at the anchor dims its forward+backward
is about half as fast as SDPA's FlashAttention-2 (docs/benchmarks/attention.md, docs/kernel_notes.md).
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
