"""Checkpoint writing that never leaves a partial file: write a temporary file beside the target, flush
it to disk, then `os.replace` it over the target (atomic on POSIX and Windows within one file system)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

TEMP_FILE_PATTERN = ".*.tmp-*"  # `.<name>.tmp-<pid>`: what a write killed before its rename leaves behind


def atomic_torch_save(obj: Any, path: _PATH) -> None:
    """`torch.save(obj, path)` such that `path` holds either its old content or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_temp_files(folder: _PATH) -> list[Path]:
    """Delete the temporary files that writes killed before their rename left in `folder` (call it before
    the run writes there); returns what was removed."""
    leftovers = sorted(Path(folder).glob(TEMP_FILE_PATTERN)) if Path(folder).is_dir() else []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that saves through `atomic_torch_save`; loading is Lightning's own."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"AtomicCheckpointIO.save_checkpoint: storage_options is not supported (got {storage_options!r})."
            )
        atomic_torch_save(checkpoint, path)
