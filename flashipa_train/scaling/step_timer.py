"""StepTimer: times training steps after a warm-up and reports step time, residues/s, peak memory and loss."""

from __future__ import annotations

import math
import statistics
import time

import pytorch_lightning as pl
import torch

METRIC_PREFIX = "scaling/"


class StepTimer(pl.Callback):
    """Times `timed_steps` training steps that follow `warmup_steps` untimed ones, then stops the run.

    On CUDA each step is bracketed by CUDA events recorded on the current stream (no host synchronisation
    until the end of the run); on CPU by `time.perf_counter`. Two times come out: `step_ms`, the wall time
    of the whole timed window divided by its steps (data loading and Lightning's hooks between steps
    included: the throughput a run sees), and `step_ms_median`, the median of the steps' own brackets.
    The peak memory counter is reset when the timed window starts (CUDA only; NaN on CPU). The loss is the
    mean over the timed steps, read once at the end. `warmup_s` is the host's wall time from the start of
    training to the first timed step: torch.compile, CUDA graph recording and kernel autotuning happen there.

    After `on_train_end`, `summary` holds the figures (plain floats and ints); they also go to every logger
    under `scaling/...` at the last step (in wandb: the run's summary; one run per sweep point).

    Args:
        warmup_steps: untimed steps first (compilation, autotuning, allocator warm-up).
        timed_steps: steps timed.
        stop_after_timed: stop training once the timed steps are done.
    """

    def __init__(self, warmup_steps: int = 3, timed_steps: int = 10, stop_after_timed: bool = True):
        if int(timed_steps) < 1 or int(warmup_steps) < 0:
            raise ValueError(f"StepTimer: warmup_steps={warmup_steps} must be >= 0 and timed_steps={timed_steps} >= 1")
        self.warmup_steps = int(warmup_steps)
        self.timed_steps = int(timed_steps)
        self.stop_after_timed = stop_after_timed
        self.summary: dict | None = None
        self._reset()

    def _reset(self) -> None:
        self._batches = 0
        self._marks: list[tuple] = []  # (start, end) per timed step: CUDA events or perf_counter floats
        self._losses: list[torch.Tensor] = []
        self._residues_per_step = 0
        self._cuda = False
        self._train_start = time.perf_counter()
        self._warmup_s = math.nan

    def _mark(self):
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _timing(self) -> bool:
        return self.warmup_steps <= self._batches < self.warmup_steps + self.timed_steps

    def on_train_start(self, trainer, pl_module) -> None:
        self._reset()
        self.summary = None
        self._cuda = pl_module.device.type == "cuda"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self._timing():
            return
        if self._batches == self.warmup_steps:
            self._warmup_s = time.perf_counter() - self._train_start
            if self._cuda:
                torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._residues_per_step = int(batch["res_mask"].numel())  # padded residues B * L: shape only, no sync
        self._marks.append((self._mark(), None))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._timing():
            self._marks[-1] = (self._marks[-1][0], self._mark())
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            if isinstance(loss, torch.Tensor):
                self._losses.append(loss.detach().float().reshape(()))
        self._batches += 1
        if self.stop_after_timed and self._batches >= self.warmup_steps + self.timed_steps:
            trainer.should_stop = True

    def _elapsed_ms(self, start, end) -> float:
        return start.elapsed_time(end) if self._cuda else (end - start) * 1e3

    def on_train_end(self, trainer, pl_module) -> None:
        done = [(s, e) for s, e in self._marks if e is not None]
        if not done:
            return
        if self._cuda:
            torch.cuda.synchronize(pl_module.device)
        per_step = [self._elapsed_ms(s, e) for s, e in done]
        window_ms = self._elapsed_ms(done[0][0], done[-1][1]) / len(done)
        world = trainer.world_size
        self.summary = {
            "steps_timed": len(done),
            "warmup_steps": self.warmup_steps,
            "warmup_s": self._warmup_s,
            "world_size": world,
            "residues_per_step": self._residues_per_step * world,
            "step_ms": window_ms,
            "step_ms_median": statistics.median(per_step),
            "step_ms_min": min(per_step),
            "residues_per_s": self._residues_per_step * world / (window_ms / 1e3),
            "peak_gib": (torch.cuda.max_memory_allocated(pl_module.device) / 2**30) if self._cuda else math.nan,
            "loss": float(torch.stack(self._losses).mean()) if self._losses else math.nan,
        }
        self._log(trainer)

    def _log(self, trainer) -> None:
        length = trainer.datamodule.length if hasattr(trainer.datamodule, "length") else None
        metrics = {METRIC_PREFIX + k: v for k, v in self.summary.items() if not math.isnan(float(v))}
        if length is not None:
            metrics[METRIC_PREFIX + "length"] = length
        for logger in trainer.loggers:  # wandb keeps the last logged values as the run's summary
            logger.log_metrics(metrics, step=trainer.global_step)
            logger.save()
