"""Frame and point arithmetic in float32 under mixed precision.

Under bf16 autocast a matmul of rotations would run in bf16 (about 3 significant digits), enough to
move atoms by tenths of an Angstrom and to break `Rigid`'s dtype check; rigid-body maths therefore
runs with autocast disabled on float32 (or float64) tensors.
"""

import torch


def geometry_precision(x: torch.Tensor):
    """Context manager: autocast off on x's device type."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def geometry_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; anything else (bf16, fp16, fp32) is done in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
