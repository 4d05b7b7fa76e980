"""Radius of gyration of the CA atoms and its ratio to the length scaling of folded proteins.

Compact globular proteins follow Rg ~ 2.2 L^0.38 Angstrom (Skolnick and co-workers' fit over PDB chains,
also used to judge structure generators); unfolded chains grow as ~ L^0.6. `rg_ratio` = Rg / (2.2 L^0.38)
is about 1 for a folded single domain, clearly above 1 for extended or multi-domain chains, below 1 for
collapsed ones.
"""

from __future__ import annotations

import numpy as np

from flashipa_train.metrics.backbone_input import as_backbone

RG_PREFACTOR = 2.2
RG_EXPONENT = 0.38


def ca_radius_of_gyration(backbone) -> float:
    """Radius of gyration (Angstrom) of the modelled CA atoms; NaN without any."""
    backbone = as_backbone(backbone)
    ca = backbone.atoms[backbone.ca_mask, 1]  # [M, 3]
    if ca.shape[0] == 0:
        return float("nan")
    return float(np.sqrt(np.mean(np.sum((ca - ca.mean(axis=0)) ** 2, axis=-1))))


def expected_radius_of_gyration(length: int) -> float:
    """2.2 L^0.38 Angstrom: the Rg of a compact globular protein of L residues."""
    return RG_PREFACTOR * float(length) ** RG_EXPONENT


def rg_ratio(backbone) -> float:
    """CA radius of gyration over `expected_radius_of_gyration` of the number of CA atoms."""
    backbone = as_backbone(backbone)
    num_ca = int(backbone.ca_mask.sum())
    if num_ca == 0:
        return float("nan")
    return ca_radius_of_gyration(backbone) / expected_radius_of_gyration(num_ca)
