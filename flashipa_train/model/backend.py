"""Choice of the IPA attention backend ("auto" resolves per call from the device of the inputs).

"auto" is "sdpa" on CUDA and "torch" elsewhere. On the H200 (torch 2.11) `sdpa` runs cuDNN's Hopper
attention, not FlashAttention-2. The Triton kernel (backend: triton) is opt-in: it runs clean on the
GPU and needs less memory, but at the anchor dims its forward+backward reaches 0.78x / 0.82x of
cuDNN's speed at L = 8192 / 32768 (1.35x the FlashAttention-2 kernel flash_ipa calls), so "auto"
keeps sdpa (docs/benchmarks/attention.md, docs/kernel_notes.md).
"""

import torch

BACKENDS = ("auto", "triton", "sdpa", "torch")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"model.attention.backend={backend!r} is not one of {BACKENDS}; set it in configs/model/attention/*.yaml"
        )
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """ "auto" -> "sdpa" on CUDA, else "torch"; other names unchanged."""
    if backend != "auto":
        return backend
    return "sdpa" if device.type == "cuda" else "torch"
