"""StepProfiler: where a few training steps spend their time (torch.profiler): device time of each part of the
model's forward, top kernels, kernel launches per step, and how much of the steps' wall time the GPU is busy
(the rest are host gaps)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile, record_function

log = logging.getLogger(__name__)


class StepProfiler(pl.Callback):
    """Profiles batches `start_step` .. `start_step + num_steps - 1` (host and, on CUDA, device activity) and
    writes a text report to `out_file` (and the log): the forward's device time per child module of
    `pl_module.model` (the blocks of a ModuleList summed; the backward is not split by module), the device
    kernels by total time, the launches per step, and the GPU's busy time (union of its kernel and copy
    intervals) against the steps' wall time.

    Args:
        start_step: first profiled batch (after the warm-up).
        num_steps: profiled batches.
        out_file: where the report goes, or None (log only).
        row_limit: rows of the kernel table.
    """

    def __init__(self, start_step: int = 8, num_steps: int = 3, out_file: str | None = None, row_limit: int = 25):
        self.start_step = int(start_step)
        self.num_steps = int(num_steps)
        self.out_file = out_file
        self.row_limit = int(row_limit)
        self._batches = 0
        self._profile: profile | None = None
        self._start = 0.0
        self._hooks: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._batches != self.start_step:
            return
        cuda = pl_module.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(pl_module.device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        self._hooks = _label_children(pl_module.model)
        self._profile = profile(activities=activities)
        self._profile.__enter__()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches += 1
        if self._profile is None or self._batches < self.start_step + self.num_steps:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        wall_ms = (time.perf_counter() - self._start) * 1e3
        self._profile.__exit__(None, None, None)
        for hook in self._hooks:
            hook.remove()
        text = self.report(self._profile, wall_ms)
        self._profile = None
        log.info("StepProfiler:\n%s", text)
        if self.out_file:
            Path(self.out_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.out_file).write_text(text + "\n")

    def report(self, prof: profile, wall_ms: float) -> str:
        events = prof.key_averages()
        device_events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        launches = sum(
            e.count
            for e in events
            if e.key
            in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx", "cudaGraphLaunch")
        )
        busy_ms = _busy_ms(prof)
        n = self.num_steps
        lines = [
            f"{n} steps, wall {wall_ms / n:.1f} ms per step; GPU busy {busy_ms / n:.1f} ms per step "
            f"({100 * busy_ms / max(wall_ms, 1e-9):.0f}%: the rest is the GPU waiting for the host); "
            f"{launches / n:.0f} kernel launches per step",
            "",
            "forward time per module, ms per step (both self-conditioning passes):",
            f"{'device':>9} {'host':>9}  module",
        ]
        modules = sorted(
            (e for e in events if e.key.startswith(_LABEL)),
            key=lambda e: (e.device_time_total, e.cpu_time_total),
            reverse=True,
        )
        lines += [
            f"{e.device_time_total / 1e3 / n:9.2f} {e.cpu_time_total / 1e3 / n:9.2f}  {e.key[len(_LABEL) :]}"
            for e in modules
        ]
        lines += ["", "device kernels by total time (all profiled steps):", f"{'ms':>9} {'calls':>7}  kernel"]
        for e in sorted(device_events, key=lambda e: e.self_device_time_total, reverse=True)[: self.row_limit]:
            lines.append(f"{e.self_device_time_total / 1e3:9.2f} {e.count:7d}  {e.key[:110]}")
        lines += ["", "host operators by total host time:"]
        host = sorted(
            (e for e in events if e.device_type == torch.autograd.DeviceType.CPU),
            key=lambda e: e.self_cpu_time_total,
            reverse=True,
        )[: self.row_limit]
        lines += [f"{e.self_cpu_time_total / 1e3:9.2f} {e.count:7d}  {e.key[:110]}" for e in host]
        return "\n".join(lines)


_LABEL = "module::"


def _label_children(model: torch.nn.Module) -> list:
    """Forward hooks that open a profiler range `module::<child>` around each child of `model` (the members
    of a ModuleList share their list's name); returns the hook handles."""
    ranges: list = []

    def enter(name):
        def hook(module, args):
            ranges.append(record_function(_LABEL + name))
            ranges[-1].__enter__()

        return hook

    def leave(module, args, output):
        ranges.pop().__exit__(None, None, None)

    handles = []
    for name, child in model.named_children():
        for member in child if isinstance(child, torch.nn.ModuleList) else [child]:
            handles += [member.register_forward_pre_hook(enter(name)), member.register_forward_hook(leave)]
    return handles


def _busy_ms(prof: profile) -> float:
    """Union of the device activity intervals (kernels, copies, sets), ms."""
    spans = sorted(
        (e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
    )
    busy, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop <= end:
            continue
        busy += stop - max(start, end)
        end = stop
    return busy / 1e3
