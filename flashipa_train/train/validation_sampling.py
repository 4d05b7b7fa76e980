"""Callback: during training, sample a few lengths with the EMA weights and log their structure metrics next to
the training set's own values (every N validation runs)."""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from flashipa_train.train.ema import sampling_weights

log = logging.getLogger(__name__)

# metrics logged as scalars (the CSV logger records the same numbers as wandb)
LOGGED_METRICS = (
    "ca_ca_mean",
    "ca_ca_std",
    "bond_dev_C-N+",
    "angle_dev_N-CA-C",
    "angle_dev_CA-C-N+",
    "clashes_per_100",
    "radius_of_gyration",
    "rg_ratio",
    "helix_fraction",
    "strand_fraction",
    "coil_fraction",
    "diversity_mean_tm",
)


class ValidationSampling(pl.Callback):
    """After every `every_n_validations`-th validation run (sanity check excluded), integrate
    `samples_per_length` backbones of each length with the EMA weights (the model's own without an EMA callback),
    compute `flashipa_train.metrics` on them and log, to every logger at the current global step:
        sample/L<length>/<metric>        per length: one series per length against the training step
        val_sample/<metric>              mean over all samples
        train_set/<metric>               the same metric on training examples (computed once, cached)
    With a wandb logger it also logs the structures (wandb.Molecule) and, as wandb.Tables, the metric rows,
    the per-length summary (`val_sample/by_length`: metrics against L at this validation) and the
    comparison with the training set.
    The samples are written to `out_dir/step_<global_step>/` as PDB files. Without biotite (e.g. a GPU
    image) the callback warns once and does nothing. Runs on global rank 0 only.

    Args:
        lengths: chain lengths sampled.
        samples_per_length: backbones per length.
        num_steps: Euler steps of each sample.
        every_n_validations: sample after every n-th validation run.
        training_set_max: training examples whose metrics are the reference (None: all of them).
        diversity: "structural" or "aligned" mean pairwise TM-score per length, or None to skip it.
        out_dir: where the PDB files go; None: `<trainer.default_root_dir>/validation_samples`.
        seed: seed of the prior draws (the same noise at every validation, so changes come from the weights).
    """

    def __init__(
        self,
        lengths: list[int] = (32, 64),
        samples_per_length: int = 2,
        num_steps: int = 20,
        every_n_validations: int = 1,
        training_set_max: int | None = 32,
        diversity: str | None = "aligned",
        out_dir: str | None = None,
        seed: int = 0,
    ):
        if every_n_validations < 1:
            raise ValueError(f"ValidationSampling: every_n_validations must be >= 1, got {every_n_validations}.")
        self.lengths = [int(L) for L in lengths]
        self.samples_per_length = int(samples_per_length)
        self.num_steps = int(num_steps)
        self.every_n_validations = int(every_n_validations)
        self.training_set_max = training_set_max
        self.diversity = diversity
        self.out_dir = out_dir
        self.seed = int(seed)
        self.validations = 0
        self._training_summary: dict | None = None
        self._warned_no_biotite = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validations += 1
        if self.validations % self.every_n_validations or not trainer.is_global_zero or not self.lengths:
            return
        if importlib.util.find_spec("biotite") is None:
            if not self._warned_no_biotite:
                log.warning("ValidationSampling: biotite is not installed; no sample metrics are logged.")
                self._warned_no_biotite = True
            return
        self.sample_and_log(trainer, pl_module)

    def sample_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict:
        """Sample, compute and log the metrics now. Returns the logged scalars of the summary."""
        from flashipa_train.sampling.outputs import sample_metric_rows, summary_by_length, write_structure_files

        started = time.perf_counter()
        backbones = self._sample(pl_module)
        step = trainer.global_step
        out_dir = (
            Path(self.out_dir or os.path.join(trainer.default_root_dir, "validation_samples")) / f"step_{step:07d}"
        )
        pdb_paths = write_structure_files(backbones, out_dir, formats=("pdb",))
        rows = sample_metric_rows(backbones)
        summaries = summary_by_length(rows, backbones, self.diversity)
        training = self._training_set_summary(trainer)

        per_length = {
            key: value
            for length in self.lengths
            for key, value in _prefixed(f"sample/L{length}/", summaries[str(length)]).items()
        }
        scalars = {**_prefixed("val_sample/", summaries["all"]), **_prefixed("train_set/", training)}
        self._log(trainer, {**per_length, **scalars}, step)
        by_length = [
            {"step": step, "length": length, **_prefixed("", summaries[str(length)])} for length in self.lengths
        ]
        self._log_wandb_media(trainer, pdb_paths, rows, by_length, summaries["all"], training, step)
        log.info(
            "ValidationSampling at step %d: %d backbones sampled and scored in %.1f s (ca_ca_mean %.2f, "
            "training set %.2f)",
            step,
            len(backbones),
            time.perf_counter() - started,
            scalars.get("val_sample/ca_ca_mean", float("nan")),
            scalars.get("train_set/ca_ca_mean", float("nan")),
        )
        return scalars

    @torch.no_grad()
    def _sample(self, pl_module: pl.LightningModule):
        from flashipa_train.sampling.generate import generate_backbones

        with sampling_weights(pl_module):  # validation may already run on the EMA weights: left as it is
            return generate_backbones(
                pl_module.model,
                pl_module.flow,
                self.lengths,
                self.samples_per_length,
                num_steps=self.num_steps,
                batch_size=self.samples_per_length,
                seed=self.seed,
            )

    def _training_set_summary(self, trainer: pl.Trainer) -> dict:
        """Mean metrics of (at most training_set_max) training examples of the DataModule; {} without one."""
        if self._training_summary is None:
            from flashipa_train.metrics import metrics_of_training_set, summarize

            backbones = training_backbones(trainer.datamodule, self.training_set_max)
            self._training_summary = summarize(metrics_of_training_set(backbones)) if backbones else {}
            if not backbones:
                log.warning("ValidationSampling: the DataModule has no train_dataset; no training-set reference.")
        return self._training_summary

    @staticmethod
    def _log(trainer: pl.Trainer, metrics: dict, step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    @staticmethod
    def _log_wandb_media(trainer, pdb_paths, rows, by_length, sample_summary, training, step) -> None:
        from pytorch_lightning.loggers import WandbLogger

        from flashipa_train.train.wandb_logger import log_samples_to_wandb

        comparison = [
            {"metric": key, "samples": sample_summary.get(key), "training_set": training.get(key)}
            for key in LOGGED_METRICS
            if key in sample_summary
        ]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                log_samples_to_wandb(logger.experiment, pdb_paths, rows, by_length, comparison, step)

    def state_dict(self) -> dict:
        return {"validations": self.validations}

    def load_state_dict(self, state_dict: dict) -> None:
        self.validations = int(state_dict.get("validations", 0))


def training_backbones(datamodule, max_examples: int | None) -> list[dict]:
    """The first `max_examples` training examples of a BackboneDataModule (whole chains, not crops) as dicts
    with atoms, atom_mask and residue_index; [] when it has no train_dataset."""
    from flashipa_train.data.example_store import load_example

    dataset = getattr(datamodule, "train_dataset", None)
    if dataset is None:
        return []
    rows = dataset.rows[:max_examples] if max_examples is not None else dataset.rows
    return [{**load_example(os.path.join(dataset.directory, row["example"])), "name": row["example"]} for row in rows]


def _prefixed(prefix: str, summary: dict) -> dict[str, float]:
    return {prefix + key: float(summary[key]) for key in LOGGED_METRICS if key in summary}
