"""Designability hook: inverse folding + refolding needs external model weights, so it is not built in.

The usual protocol (self-consistency, "scRMSD"): design 8 sequences per backbone with ProteinMPNN
(CA-only or full-backbone model, sampling temperature 0.1), fold each with ESMFold, superimpose the
predicted CA atoms on the sample's, and call the backbone designable when the best CA RMSD is below
2 Angstrom. To plug it in, write a function with the signature of `designability` that runs those
two models (e.g. the `ProteinMPNN` repository's `protein_mpnn_run.py` on PDB files written by
`flashipa_train.io.pdb_writer.write_backbone`, then `esm.pretrained.esmfold_v1()`), and pass it
where the metrics are collected; `aligned_tm_score` and a Kabsch RMSD on CA atoms score the refolds.
"""

from __future__ import annotations


def designability(backbone, num_sequences: int = 8) -> dict[str, float]:
    """Would return {"sc_rmsd": best CA RMSD of the refolded designs, "designable": 1.0 or 0.0}.

    Raises NotImplementedError: ProteinMPNN and ESMFold weights are not a dependency of flashipa_train.
    """
    raise NotImplementedError(
        "designability needs ProteinMPNN (inverse folding) and ESMFold (refolding), which are not "
        "dependencies of flashipa_train. See the docstring of flashipa_train/metrics/designability.py "
        "for the protocol and where to plug your own implementation in."
    )
