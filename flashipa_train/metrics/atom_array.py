"""biotite AtomArray of a backbone, for the metrics that use biotite's structure analysis."""

from __future__ import annotations

import biotite.structure as struc
import numpy as np

from flashipa_train.metrics.backbone_input import Backbone, as_backbone

BACKBONE_ATOM_NAMES = ("N", "CA", "C", "O")
BACKBONE_ELEMENTS = ("N", "C", "C", "O")


def backbone_to_atom_array(
    atoms, mask=None, chain_id="A", res_name: str = "GLY", residue_index=None
) -> struc.AtomArray:
    """AtomArray of the modelled backbone atoms, residues numbered residue_index + 1.

    Args:
        atoms: [L, 4, 3] N, CA, C, O (numpy or torch), a dict with "atoms", or a `Backbone`.
        mask: [L] or [L, 4] bool, True where modelled; masked atoms are left out of the array.
        chain_id: one chain id, or [L] ids.
        res_name: residue name written for every residue (generated backbones have no sequence).
        residue_index: [L] integer positions; 0..L-1 when omitted. Gaps in it are chain breaks for
            biotite (e.g. `annotate_sse` does not bridge them).
    """
    backbone = atoms if isinstance(atoms, Backbone) else as_backbone(atoms, mask, chain_id, residue_index)
    num_res = backbone.length
    array = struc.AtomArray(num_res * 4)
    array.coord = backbone.atoms.reshape(-1, 3).astype(np.float32)  # [L*4, 3]
    array.chain_id = np.repeat(backbone.chain_ids, 4)
    array.res_id = np.repeat(backbone.residue_index + 1, 4)
    array.res_name = np.full(num_res * 4, res_name)
    array.atom_name = np.tile(BACKBONE_ATOM_NAMES, num_res)
    array.element = np.tile(BACKBONE_ELEMENTS, num_res)
    array.hetero = np.zeros(num_res * 4, dtype=bool)
    return array[backbone.atom_mask.reshape(-1)]
