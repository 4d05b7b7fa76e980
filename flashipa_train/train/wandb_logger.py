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
