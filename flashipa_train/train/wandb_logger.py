"""Weights & Biases: the logger (offline by itself without credentials), the run's config, the sample tables,
and the end of a run. wandb is imported only where a wandb run is in use.

One `flashipa-train` job is one wandb run: `finish_wandb_run` closes it when the job ends, so the jobs of a
Hydra multirun (a scaling sweep) become separate runs instead of sharing the first one. Every metric is
plotted against Lightning's `trainer/global_step` (its `*` rule); no other axis is defined, so no two
`define_metric` rules can claim one key.
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path


def wandb_credentials_present() -> bool:
    """True when WANDB_API_KEY is set or `wandb login` has stored a key for api.wandb.ai in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(str(netrc_path)).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError):
        return False


def wandb_offline(offline: bool | None = None) -> bool:
    """`offline=None`: offline when WANDB_MODE says so or there are no credentials (never a login prompt)."""
    if offline is not None:
        return offline
    return os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled") or not wandb_credentials_present()


def make_wandb_logger(
    project: str,
    group: str | None = None,
    name: str | None = None,
    save_dir: str = ".",
    offline: bool | None = None,
    **kwargs,
):
    """A Lightning `WandbLogger`; `offline=None` picks offline mode when there are no wandb credentials
    (or WANDB_MODE=offline), so runs never block on a login prompt. Sync later with `wandb sync DIR`."""
    from pytorch_lightning.loggers import WandbLogger

    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        project=project, group=group, name=name, save_dir=save_dir, offline=wandb_offline(offline), **kwargs
    )


def log_run_config(loggers: list, run_facts: dict, resolved_config: dict) -> None:
    """Put the run's facts (variant, backend, length, batch, precision, compile, device, versions: top-level
    keys to filter and group runs by) and the whole resolved Hydra config (data, model, trainer, ... sections)
    into every logger's hyperparameters: wandb's run.config, the CSV logger's hparams.yaml."""
    params = {**resolved_config, **run_facts}
    for logger in loggers:
        logger.log_hyperparams(params)


def active_wandb_run():
    """The wandb run of this process, or None (wandb is never imported here: a GPU image may lack it)."""
    wandb = sys.modules.get("wandb")
    return getattr(wandb, "run", None) if wandb is not None else None


def finish_wandb_run(summary: dict | None = None, failed: bool = False) -> None:
    """Add `summary` to the active wandb run's summary and finish it (exit code 1 when `failed`); no-op
    without one. Called at the end of every flashipa-train job."""
    run = active_wandb_run()
    if run is None:
        return
    if summary:
        run.summary.update(summary)
    run.finish(exit_code=1 if failed else 0)


def log_samples_to_wandb(
    experiment, pdb_paths: list, rows: list[dict], by_length: list[dict], comparison: list[dict], step: int
) -> None:
    """Log at `trainer/global_step` = step: the sampled structures as 3D `wandb.Molecule`s, and as
    `wandb.Table`s the per-sample metric rows, the per-length summary (one row per length: this
    validation's metrics against L) and the samples-vs-training-set comparison."""
    import wandb

    payload = {"trainer/global_step": step}
    if pdb_paths:
        payload["val_sample/structures"] = [wandb.Molecule(str(p), caption=Path(p).stem) for p in pdb_paths]
    tables = (
        ("val_sample/metrics_table", rows),
        ("val_sample/by_length", by_length),
        ("val_sample/vs_training_set", comparison),
    )
    for key, table_rows in tables:
        if table_rows:
            payload[key] = rows_to_table(table_rows)
    experiment.log(payload)


def rows_to_table(rows: list[dict]):
    """A `wandb.Table` of dict rows, the union of their keys as columns (first-seen order)."""
    import wandb

    columns = list(dict.fromkeys(k for row in rows for k in row))
    return wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
