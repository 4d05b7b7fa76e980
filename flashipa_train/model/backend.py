"""Choice of the IPA attention backend ("auto" resolves per call from the device of the inputs)."""

import functools

import torch

BACKENDS = ("auto", "triton", "sdpa", "torch")


@functools.cache
def triton_kernel_available() -> bool:
    """True when the FlashIPA Triton kernel (kernels.flash_ipa) imports."""
    try:
        import kernels.flash_ipa  # noqa: F401
    except ImportError:
        return False
    return True


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"model.attention.backend={backend!r} is not one of {BACKENDS}; set it in configs/model/attention/*.yaml")
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """"auto" -> "triton" on CUDA when the kernel imports, else "torch"; other names unchanged."""
    if backend != "auto":
        return backend
    return "triton" if device.type == "cuda" and triton_kernel_available() else "torch"
