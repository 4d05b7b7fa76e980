"""`flashipa-scaling`: the sweep's Hydra entry point (configs/train.yaml with experiment=scaling). Each job is
one sweep point: `train(cfg)` with a StepTimer, its outcome (a failure included) a row of the sweep's results
table; the command returns normally for a failed point so the multirun goes on.

    flashipa-scaling -m experiment=scaling
    python -m flashipa_train.scaling.cli -m experiment=scaling_smoke     # without the console script
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from flashipa_train.config import CONFIG_DIR
from flashipa_train.scaling.sweep_point import run_scaling_point
from flashipa_train.train.cli import train
from flashipa_train.train.wandb_logger import finish_wandb_run


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    """Console entry point `flashipa-scaling`: run one sweep point. Each job's wandb run is finished when the
    job ends (its summary gets the point's status and wall time), so every point is its own run."""
    if not cfg.get("scaling"):
        print(
            "flashipa-scaling: error: the config has no scaling section: pass experiment=scaling "
            "(or experiment=scaling_smoke); plain training runs are `flashipa-train`.",
            file=sys.stderr,
        )
        sys.exit(2)
    try:
        row = run_scaling_point(cfg, train)
        finish_wandb_run(
            {"scaling/status": row["status"], "scaling/wall_s": row["wall_s"]}, failed=row["status"] != "ok"
        )
    finally:
        finish_wandb_run(failed=True)  # still open only when the job raised


if __name__ == "__main__":
    main()
