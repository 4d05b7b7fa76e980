"""Length units. Structures are read and written in Angstrom; the flow and the model's frames work in nm
(translations of order 1, like the rotations' angles)."""

ANGSTROM_TO_NM = 0.1
NM_TO_ANGSTROM = 10.0
