"""Amino-acid alphabet and the mapping of residue names to it.

Kept free of biotite and torch so training code can import it cheaply.
"""

# Order follows AlphaFold/OpenFold `restypes`, so aatype integers mean the same thing as there.
RESTYPES = "ARNDCQEGHILKMFPSTWYV"
UNKNOWN_RESTYPE = "X"
RESTYPES_WITH_X = RESTYPES + UNKNOWN_RESTYPE
UNKNOWN_AATYPE = len(RESTYPES)  # 20

THREE_TO_ONE = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C",
    "GLN": "Q", "GLU": "E", "GLY": "G", "HIS": "H", "ILE": "I",
    "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P",
    "SER": "S", "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V",
}

# Common chemically modified residues found in PDB entries, mapped to their parent amino acid.
# The parent is the `mon_nstd_parent_comp_id` of the wwPDB Chemical Component Dictionary.
MODIFIED_TO_PARENT = {
    "MSE": "MET",  # selenomethionine
    "MLY": "LYS", "M3L": "LYS", "MLZ": "LYS", "KCX": "LYS", "ALY": "LYS", "LLP": "LYS",
    "SEP": "SER",
    "TPO": "THR",
    "PTR": "TYR", "TYS": "TYR",
    "CSO": "CYS", "CSD": "CYS", "CME": "CYS", "CSS": "CYS", "OCS": "CYS", "CAS": "CYS",
    "SMC": "CYS", "CSX": "CYS", "YCM": "CYS",
    "HYP": "PRO",
    "PCA": "GLN",  # pyroglutamate, a cyclised N-terminal Gln (or Glu)
    "CGU": "GLU",
    "HIC": "HIS", "NEP": "HIS", "HIP": "HIS",
    "MEN": "ASN",
    "SAC": "SER",
    "NLE": "LEU",
    "FME": "MET",
    "DAL": "ALA",
    "MVA": "VAL",
    "AIB": "ALA",
    "SEC": "CYS",  # selenocysteine
    "PYL": "LYS",  # pyrrolysine
}

BACKBONE_ATOMS = ("N", "CA", "C", "O")


def aatype_from_residue_name(residue_name: str) -> int:
    """Return the aatype index (0..19, 20 = unknown 'X') of a three-letter residue name."""
    name = MODIFIED_TO_PARENT.get(residue_name, residue_name)
    one_letter = THREE_TO_ONE.get(name)
    return UNKNOWN_AATYPE if one_letter is None else RESTYPES.index(one_letter)


def sequence_from_aatype(aatype) -> str:
    """One-letter sequence of an iterable of aatype indices."""
    return "".join(RESTYPES_WITH_X[int(a)] for a in aatype)
