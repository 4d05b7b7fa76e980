"""Metrics of a training set, computed like the samples' so the two can be compared side by side."""

from __future__ import annotations

from flashipa_train.metrics.sample_metrics import backbone_metrics
from flashipa_train.metrics.structure_sources import iter_backbones


def metrics_of_training_set(source, max_examples: int | None = None) -> list[dict]:
    """`backbone_metrics` rows of every training backbone.

    Args:
        source: a preprocessed directory (flashipa-preprocess output: reads metadata.csv and the example
            .npz files), a folder of structure files, or a list of backbones.
        max_examples: stop after this many backbones (None: all).
    """
    return [backbone_metrics(b) for b in iter_backbones(source, max_examples)]
