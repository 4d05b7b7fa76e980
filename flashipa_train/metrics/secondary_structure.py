"""Helix / strand / coil fractions by P-SEA (biotite's `annotate_sse`, which reads CA atoms only)."""

from __future__ import annotations

import biotite.structure as struc
import numpy as np

from flashipa_train.data.chain_features import sse_fractions  # noqa: F401 - the one definition, re-exported
from flashipa_train.metrics.atom_array import backbone_to_atom_array
from flashipa_train.metrics.backbone_input import as_backbone


def sse_labels(backbone) -> np.ndarray:
    """[L] P-SEA labels: 'a' helix, 'b' strand, 'c' coil, '' where the CA is not modelled."""
    backbone = as_backbone(backbone)
    labels = np.full(backbone.length, "", dtype="<U1")
    if not backbone.ca_mask.any():
        return labels
    array = backbone_to_atom_array(backbone)
    has_atom = backbone.atom_mask.any(axis=1)  # [L] the residues present in `array`, one label each
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate (e.g. collapsed) samples
        labels[has_atom] = struc.annotate_sse(array).astype("<U1")
    labels[~backbone.ca_mask] = ""
    return labels
