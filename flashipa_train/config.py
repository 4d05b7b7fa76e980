"""Compose the `flashipa-train` config from Python (notebooks, tests) without the command line."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

# A wheel carries configs/ as flashipa_train/configs (setup.py); a source checkout has it at the top.
_PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
CONFIG_DIR = (
    _PACKAGED_CONFIGS
    if (_PACKAGED_CONFIGS / "train.yaml").is_file()
    else Path(__file__).resolve().parents[1] / "configs"
)


def compose_train_config(
    overrides: list[str] | None = None, output_dir: str | Path | None = None, config_dir: str | Path = CONFIG_DIR
) -> DictConfig:
    """`configs/train.yaml` composed with command-line style `overrides`, e.g. ["model/attention=dense_ipa"].

    `paths.output_dir` normally comes from Hydra's run folder, which exists only under `@hydra.main`;
    pass `output_dir` to set it here.
    """
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg
