"""Per-chain backbone features from a biotite AtomArray: coordinates, masks, residue ids, aatype, SSE."""

from dataclasses import dataclass

import biotite.structure as struc
import numpy as np

from flashipa_train.data.residue_constants import BACKBONE_ATOMS, aatype_from_residue_name, standard_residue_names


@dataclass
class ChainBackbone:
    """Backbone of one protein chain (or one break-free segment of it), residues in file order."""

    chain_id: str
    segment: int  # 0 for a whole chain; 0, 1, ... for segments when chains are split at breaks
    atoms: np.ndarray  # [L, 4, 3] float32, N, CA, C, O; 0 where not modelled
    atom_mask: np.ndarray  # [L, 4] bool, True where the atom is modelled
    b_factors: np.ndarray  # [L, 4] float32, 0 where not modelled
    aatype: np.ndarray  # [L] int8, 0..19, 20 = unknown (X)
    residue_number: np.ndarray  # [L] int32, author residue numbers
    insertion_code: np.ndarray  # [L] <U1, '' when none
    residue_index: np.ndarray  # [L] int32, strictly increasing from 0; numbering gaps kept
    sse: np.ndarray  # [L] <U1, P-SEA label 'a' helix, 'b' strand, 'c' coil, '' without CA

    @property
    def length(self) -> int:
        return int(self.aatype.shape[0])

    def slice(self, start: int, stop: int, segment: int) -> "ChainBackbone":
        """Residues [start, stop) as segment `segment`, residue_index restarted at 0."""
        residue_index = self.residue_index[start:stop]
        return ChainBackbone(
            chain_id=self.chain_id,
            segment=segment,
            atoms=self.atoms[start:stop],
            atom_mask=self.atom_mask[start:stop],
            b_factors=self.b_factors[start:stop],
            aatype=self.aatype[start:stop],
            residue_number=self.residue_number[start:stop],
            insertion_code=self.insertion_code[start:stop],
            residue_index=residue_index - residue_index[0],
            sse=self.sse[start:stop],
        )


def protein_chain_atoms(atoms: struc.AtomArray) -> list[tuple[str, struc.AtomArray]]:
    """(chain id, atoms) of every chain holding amino-acid residues, in file order.

    Keeps residues the Chemical Component Dictionary types as peptide-linking (standard and modified
    amino acids), but drops HETATM residues with a standard name: those are free amino-acid ligands.
    """
    is_amino_acid = struc.filter_amino_acids(atoms)
    is_free_amino_acid = atoms.hetero & np.isin(atoms.res_name, standard_residue_names())
    protein = atoms[is_amino_acid & ~is_free_amino_acid]
    chain_ids = list(dict.fromkeys(protein.chain_id.tolist()))
    return [(chain_id, protein[protein.chain_id == chain_id]) for chain_id in chain_ids]


def chain_backbone(chain_id: str, chain_atoms: struc.AtomArray) -> ChainBackbone:
    """Backbone arrays of one chain's amino-acid atoms (as returned by `protein_chain_atoms`)."""
    starts = struc.get_residue_starts(chain_atoms)
    num_residues = len(starts)
    # [N_atoms] residue position of every atom
    atom_residue = np.searchsorted(starts, np.arange(chain_atoms.array_length()), side="right") - 1

    atoms = np.zeros((num_residues, 4, 3), dtype=np.float32)
    atom_mask = np.zeros((num_residues, 4), dtype=bool)
    b_factors = np.zeros((num_residues, 4), dtype=np.float32)
    for k, name in enumerate(BACKBONE_ATOMS):
        is_atom = chain_atoms.atom_name == name
        residues = atom_residue[is_atom]
        atoms[residues, k] = chain_atoms.coord[is_atom]
        atom_mask[residues, k] = True
        b_factors[residues, k] = chain_atoms.b_factor[is_atom]

    residue_names = chain_atoms.res_name[starts]
    aatype = np.array([aatype_from_residue_name(n) for n in residue_names], dtype=np.int8)
    residue_number = chain_atoms.res_id[starts].astype(np.int32)
    insertion_code = chain_atoms.ins_code[starts].astype("<U1")
    sse = struc.annotate_sse(chain_atoms).astype("<U1")
    return ChainBackbone(
        chain_id=chain_id,
        segment=0,
        atoms=atoms,
        atom_mask=atom_mask,
        b_factors=b_factors,
        aatype=aatype,
        residue_number=residue_number,
        insertion_code=insertion_code,
        residue_index=increasing_residue_index(residue_number),
        sse=sse,
    )


def increasing_residue_index(residue_number: np.ndarray) -> np.ndarray:
    """[L] int32 positions from 0 that follow the author numbering's gaps but always step >= 1.

    Insertion codes (52, 52A, 52B) and numbering that restarts or runs backwards still give
    strictly increasing positions, so relative-position features stay well defined.
    """
    steps = np.maximum(np.diff(residue_number.astype(np.int64)), 1)
    return np.concatenate([[0], np.cumsum(steps)]).astype(np.int32)


def chain_break_after(backbone: ChainBackbone, max_ca_ca_distance: float) -> np.ndarray:
    """[L-1] bool, True where the CA-CA distance to the next residue exceeds the limit.

    Pairs where either CA is missing are not counted as breaks (their distance is unknown).
    """
    ca = backbone.atoms[:, 1]  # [L, 3]
    has_ca = backbone.atom_mask[:, 1]  # [L]
    distance = np.linalg.norm(ca[1:] - ca[:-1], axis=-1)  # [L-1]
    return (distance > max_ca_ca_distance) & has_ca[1:] & has_ca[:-1]


def split_at_breaks(backbone: ChainBackbone, breaks: np.ndarray) -> list[ChainBackbone]:
    """Break-free segments of `backbone`; `breaks` is the [L-1] output of `chain_break_after`."""
    bounds = [0, *(np.flatnonzero(breaks) + 1).tolist(), backbone.length]
    return [backbone.slice(start, stop, segment) for segment, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:]))]


def sse_fractions(sse: np.ndarray) -> dict[str, float]:
    """{"helix_fraction", "strand_fraction", "coil_fraction"} of P-SEA labels ('a', 'b', 'c'; '' = not
    labelled) over the labelled residues (sum to 1); NaN for all three when no residue is labelled. The one
    definition, used by preprocessing (metadata, coil filter) and by the sample metrics."""
    labelled = sse[sse != ""]
    if labelled.size == 0:
        return {"helix_fraction": float("nan"), "strand_fraction": float("nan"), "coil_fraction": float("nan")}
    return {
        f"{name}_fraction": float(np.mean(labelled == label))
        for name, label in (("helix", "a"), ("strand", "b"), ("coil", "c"))
    }


def ca_radius_of_gyration(backbone: ChainBackbone) -> float:
    """Radius of gyration (Å) of the modelled CA atoms (biotite's `gyration_radius`); NaN without any."""
    ca = backbone.atoms[backbone.atom_mask[:, 1], 1]  # [L_ca, 3]
    if ca.shape[0] == 0:
        return float("nan")
    ca_atoms = struc.AtomArray(ca.shape[0])
    ca_atoms.coord, ca_atoms.element = ca, np.full(ca.shape[0], "C")
    return float(struc.gyration_radius(ca_atoms))
