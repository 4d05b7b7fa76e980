"""Radius of gyration of the CA atoms and its ratio to the length scaling of folded proteins.

Compact globular proteins follow Rg ~ 2.2 L^0.38 Angstrom (Skolnick and co-workers' fit over PDB chains,
also used to judge structure generators); unfolded chains grow as ~ L^0.6. `rg_ratio` = Rg / (2.2 L^0.38)
is about 1 for a folded single domain, clearly above 1 for extended or multi-domain chains, below 1 for
collapsed ones.
"""

from __future__ import annotations

import biotite.structure as struc

from flashipa_train.metrics.atom_array import backbone_to_atom_array
from flashipa_train.metrics.backbone_input import as_backbone

RG_PREFACTOR = 2.2
RG_EXPONENT = 0.38


def ca_radius_of_gyration(backbone) -> float:
    """Radius of gyration (Angstrom) of the modelled CA atoms (biotite's `gyration_radius`); NaN without any."""
    backbone = as_backbone(backbone)
    if not backbone.ca_mask.any():
        return float("nan")
    array = backbone_to_atom_array(backbone)
    return float(struc.gyration_radius(array[array.atom_name == "CA"]))


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
