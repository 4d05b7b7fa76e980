"""SyncProbe: names every host synchronisation inside a few training steps (torch.cuda.set_sync_debug_mode)."""

from __future__ import annotations

import logging
import traceback
import warnings
from collections import Counter
from pathlib import Path

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)

_SYNC_WARNING = "synchronizing CUDA operation"  # the text of PyTorch's sync-debug warning


class SyncProbe(pl.Callback):
    """From the start of batch `start_step` to the end of batch `start_step + num_steps - 1` PyTorch warns at
    every CUDA operation that makes the host wait for the device (`torch.cuda.set_sync_debug_mode("warn")`):
    `.item()`, `bool(tensor)`, a blocking copy to the CPU, `nonzero`... Each warning is counted by call site,
    the innermost `frames` Python frames of its stack. When the probed steps end, the sites go to the log
    (and to `out_file` when set) and stay in `sites`. Does nothing on CPU.

    Syncs that PyTorch does not see (a copy from pageable host memory, `torch.cuda.synchronize` itself) are
    not named; the StepTimer's CUDA events show their cost.

    Args:
        start_step: first probed batch (after the warm-up: compilation and autotuning synchronise by design).
        num_steps: probed batches.
        frames: innermost Python frames that name a site.
        out_file: text report of the sites, or None.
    """

    def __init__(self, start_step: int = 5, num_steps: int = 5, frames: int = 4, out_file: str | None = None):
        self.start_step = int(start_step)
        self.num_steps = int(num_steps)
        self.frames = int(frames)
        self.out_file = out_file
        self.sites: Counter[str] = Counter()
        self._batches = 0
        self._catcher: warnings.catch_warnings | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._batches == self.start_step and pl_module.device.type == "cuda":
            self.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches += 1
        if self._batches >= self.start_step + self.num_steps:
            self.stop()

    def on_train_end(self, trainer, pl_module) -> None:
        self.stop()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.stop()

    def start(self) -> None:
        """Count synchronisations from now on (the device's sync-debug mode, when CUDA is there)."""
        if self._catcher is not None:
            return
        self._catcher = warnings.catch_warnings()  # restores the filters and showwarning on exit
        self._catcher.__enter__()
        warnings.simplefilter("always")
        shown = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            if _SYNC_WARNING not in str(message):
                return shown(message, category, filename, lineno, file, line)
            self.sites[self._site()] += 1

        warnings.showwarning = record
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")

    def stop(self) -> None:
        """Stop counting and report the sites."""
        if self._catcher is None:
            return
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
        self._catcher.__exit__(None, None, None)
        self._catcher = None
        text = self.report()
        log.info("SyncProbe:\n%s", text)
        if self.out_file:
            Path(self.out_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.out_file).write_text(text + "\n")

    def _site(self) -> str:
        """The innermost frames of the current stack, outside the warnings machinery and this file."""
        stack = [f for f in traceback.extract_stack() if not f.filename.endswith(("warnings.py", "sync_probe.py"))][
            -self.frames :
        ]
        return " <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in reversed(stack))

    def report(self) -> str:
        """One line per call site, most frequent first: `count  site`."""
        probed = f"{self.num_steps} steps from batch {self.start_step}"
        if not self.sites:
            return f"no host synchronisation in {probed}"
        lines = [f"{sum(self.sites.values())} host synchronisations in {probed}, by call site (innermost first):"]
        lines += [f"{count:6d}  {site}" for site, count in self.sites.most_common()]
        return "\n".join(lines)


def _short(filename: str) -> str:
    """A path from the package folder on (site-packages/torch/... -> torch/...)."""
    parts = Path(filename).parts
    for root in ("flashipa_train", "flashipa_kernels", "kernels", "pytorch_lightning", "lightning_fabric", "torch"):
        if root in parts:
            return "/".join(parts[parts.index(root) :])
    return Path(filename).name
