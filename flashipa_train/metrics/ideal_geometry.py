"""Ideal backbone bond lengths (Angstrom) and angles (degrees): Engh & Huber (1991), non-proline values.

These are the literature values AlphaFold2's residue constants also use. Generated backbones are
poly-glycine without sequence, so the proline C-N length (1.341 A) is not used.
Bonds and angles are named by their atoms; a trailing "+" marks an atom of the next residue.
"""

# name: (atom index in residue i or i+1 as (residue offset, atom), ...) with atoms 0 N, 1 CA, 2 C, 3 O
IDEAL_BOND_LENGTHS = {
    "N-CA": 1.458,
    "CA-C": 1.525,
    "C-O": 1.231,
    "C-N+": 1.329,  # the peptide bond
}
IDEAL_BOND_ANGLES = {
    "N-CA-C": 111.2,
    "CA-C-N+": 116.2,
    "C-N+-CA+": 121.7,
}

BOND_ATOMS = {
    "N-CA": ((0, 0), (0, 1)),
    "CA-C": ((0, 1), (0, 2)),
    "C-O": ((0, 2), (0, 3)),
    "C-N+": ((0, 2), (1, 0)),
}
ANGLE_ATOMS = {
    "N-CA-C": ((0, 0), (0, 1), (0, 2)),
    "CA-C-N+": ((0, 1), (0, 2), (1, 0)),
    "C-N+-CA+": ((0, 2), (1, 0), (1, 1)),
}

IDEAL_CA_CA_DISTANCE = 3.80
"""Trans peptide CA(i)-CA(i+1) distance; cis peptides (about 0.3% of residues) give about 2.9 A."""
