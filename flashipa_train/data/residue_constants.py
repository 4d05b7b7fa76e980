"""Amino-acid alphabet and the mapping of residue names to it.

One-letter codes come from the wwPDB Chemical Component Dictionary through biotite
(`biotite.structure.info.one_letter_code`), which also maps modified residues to their parent amino acid
(MSE -> M, SEP -> S, ...). biotite is imported on first use, so importing this module stays cheap.
"""

from functools import cache, lru_cache

# Order follows AlphaFold/OpenFold `restypes`, so aatype integers mean the same thing as there.
RESTYPES = "ARNDCQEGHILKMFPSTWYV"
UNKNOWN_RESTYPE = "X"
RESTYPES_WITH_X = RESTYPES + UNKNOWN_RESTYPE
UNKNOWN_AATYPE = len(RESTYPES)  # 20

BACKBONE_ATOMS = ("N", "CA", "C", "O")


@cache
def aatype_from_residue_name(residue_name: str) -> int:
    """Return the aatype index (0..19, 20 = unknown 'X') of a three-letter residue name: the CCD one-letter
    code of the residue (of its parent for a modified residue); 20 for names without one among RESTYPES
    (unknown names, UNK, selenocysteine U, pyrrolysine O)."""
    from biotite.structure.info import one_letter_code

    letter = one_letter_code(residue_name)
    return RESTYPES.index(letter) if letter and letter in RESTYPES else UNKNOWN_AATYPE


@lru_cache(maxsize=1)
def standard_residue_names() -> tuple[str, ...]:
    """Three-letter names of the 20 standard amino acids, in RESTYPES order."""
    from biotite.sequence import ProteinSequence

    return tuple(ProteinSequence.convert_letter_1to3(letter) for letter in RESTYPES)


def sequence_from_aatype(aatype) -> str:
    """One-letter sequence of an iterable of aatype indices."""
    return "".join(RESTYPES_WITH_X[int(a)] for a in aatype)
