"""The training progress bar counts optimizer steps of the whole run (global step / max_steps) across epochs."""

import pytorch_lightning as pl
from pytorch_lightning.demos.boring_classes import BoringModel

from flashipa_train.train.progress_bar import StepProgressBar


def test_progress_bar_runs_from_zero_to_max_steps_across_short_epochs(capsys):
    bar = StepProgressBar(refresh_rate=1)
    trainer = pl.Trainer(
        max_steps=7,
        limit_train_batches=3,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[bar],
    )
    trainer.fit(BoringModel())
    assert trainer.current_epoch >= 2  # epochs of 3 batches: the bar outlives them
    assert bar.train_progress_bar.total == 7 and bar.train_progress_bar.n == 7
    assert "7/7" in capsys.readouterr().out
