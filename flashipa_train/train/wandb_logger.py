"""Weights & Biases logger that goes offline by itself when no credentials are present."""

from __future__ import annotations

import netrc
import os
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

    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_credentials_present()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, group=group, name=name, save_dir=save_dir, offline=offline, **kwargs)


# Keys of the sample metrics (see validation_sampling.py): per-length values are plotted against the chain
# length, the summaries and the training set's reference values against the training step.
LENGTH_KEY = "sample/length"


def define_sample_metrics(experiment) -> None:
    """Tell wandb to plot `sample/<metric>` against `sample/length` and `val_sample/*`, `train_set/*` against
    `trainer/global_step`."""
    experiment.define_metric(LENGTH_KEY)
    experiment.define_metric("sample/*", step_metric=LENGTH_KEY)
    experiment.define_metric("trainer/global_step")
    for prefix in ("val_sample/*", "train_set/*"):
        experiment.define_metric(prefix, step_metric="trainer/global_step")


def log_samples_to_wandb(experiment, pdb_paths: list, rows: list[dict], comparison: list[dict], step: int) -> None:
    """Log sampled structures as 3D `wandb.Molecule`s (from PDB files), the per-sample metric rows and the
    samples-vs-training-set comparison as `wandb.Table`s, all at `trainer/global_step` = step."""
    import wandb

    payload = {"trainer/global_step": step}
    if pdb_paths:
        payload["val_sample/structures"] = [wandb.Molecule(str(p), caption=_stem(p)) for p in pdb_paths]
    for key, table_rows in (("val_sample/metrics_table", rows), ("val_sample/vs_training_set", comparison)):
        if table_rows:
            columns = list(dict.fromkeys(k for row in table_rows for k in row))
            payload[key] = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in table_rows])
    experiment.log(payload)


def _stem(path) -> str:
    return Path(path).stem
