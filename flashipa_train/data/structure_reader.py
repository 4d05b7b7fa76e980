"""Read one structure file (PDB, mmCIF or BinaryCIF, optionally gzipped) with biotite.

Returns one model (default: the first) with the highest-occupancy alternate location of every residue, plus the header
fields the filters need (experimental method, resolution, entry id).
"""

import gzip
import io
import math
import os
import warnings
from dataclasses import dataclass

import biotite.structure as struc
import biotite.structure.io.pdb as pdb
import biotite.structure.io.pdbx as pdbx

from flashipa_train.data.cif_model_filter import keep_one_model

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".bcif")
GZIP_MAGIC = b"\x1f\x8b"
# Header ids that name no entry (models and stripped files); the file name is used instead.
PLACEHOLDER_ENTRY_IDS = ("", "xxxx", "????", "structure")


@dataclass
class ParsedStructure:
    """One model of a structure file and its header fields."""

    atoms: struc.AtomArray  # with `b_factor` and `occupancy` annotations
    model_count: int
    method: str  # experimental method(s) joined by ';', '' when the header gives none
    resolution: float  # Å; NaN when the header gives none (NMR, models, stripped files)
    entry_id: str  # PDB id from the header, else the file name without suffixes (lower case)


def structure_format(path: str) -> str:
    """'pdb', 'cif' or 'bcif' from the file name ('.gz' ignored); ValueError for other names."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".pdb", ".ent")):
        return "pdb"
    if name.endswith((".cif", ".mmcif")):
        return "cif"
    if name.endswith(".bcif"):
        return "bcif"
    raise ValueError(f"{path}: unknown structure suffix; expected one of {STRUCTURE_SUFFIXES} (optionally .gz)")


def is_structure_file_name(path: str) -> bool:
    """True when the name ends in a structure suffix, optionally followed by '.gz'."""
    name = path.lower()
    return name.removesuffix(".gz").endswith(STRUCTURE_SUFFIXES)


def entry_id_from_file_name(path: str) -> str:
    """'1abc' for '/x/1ABC.cif.gz' or '/x/pdb1abc.ent'."""
    name = os.path.basename(path).lower().removesuffix(".gz")
    stem = os.path.splitext(name)[0]
    if name.endswith(".ent") and stem.startswith("pdb") and len(stem) == 7:
        stem = stem[3:]
    return stem


def parse_structure(path: str, raw: bytes, model: int = 1, altloc: str = "occupancy") -> ParsedStructure:
    """Parse model `model` from the raw bytes of the file at `path` (gzip is detected from its magic bytes).

    `altloc` is biotite's choice of alternate location: "occupancy" (highest) or "first".

    Raises ValueError (or biotite's own errors) for empty, truncated or unreadable files; the caller
    turns any exception into a rejected row.
    """
    if raw[:2] == GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if not raw.strip():
        raise ValueError("empty file")
    fmt = structure_format(path)
    with warnings.catch_warnings():
        # biotite warns about unknown residue names, missing header records etc.; those are
        # judged by the filters, not printed once per file.
        warnings.simplefilter("ignore")
        if fmt == "pdb":
            parsed = _parse_pdb(_decode_text(raw), model, altloc)
        else:
            parsed = _parse_pdbx(raw, fmt == "bcif", model, altloc)
    if parsed.atoms.array_length() == 0:
        raise ValueError(f"no atoms in model {model}")
    if parsed.entry_id in PLACEHOLDER_ENTRY_IDS:
        parsed.entry_id = entry_id_from_file_name(path)
    return parsed


def _parse_pdb(text: str, model: int, altloc: str) -> ParsedStructure:
    pdb_file = pdb.PDBFile.read(io.StringIO(text))
    model_count = pdb_file.get_model_count()
    if model_count == 0:
        raise ValueError("no ATOM/HETATM records")
    _check_model(model, model_count)
    atoms = pdb.get_structure(pdb_file, model=model, altloc=altloc, extra_fields=["b_factor", "occupancy"])
    method, resolution, entry_id = "", math.nan, ""
    for line in pdb_file.lines:
        if line.startswith("HEADER") and len(line) >= 66:
            entry_id = line[62:66].strip().lower()
        elif line.startswith("EXPDTA"):
            method = ";".join(m.strip() for m in line[10:].split(";") if m.strip())
        elif line.startswith("REMARK   2 RESOLUTION."):
            resolution = _float_or_nan(line[22:].split()[0] if line[22:].split() else "")
    return ParsedStructure(atoms, model_count, method, resolution, entry_id)


def _parse_pdbx(raw: bytes, binary: bool, model: int, altloc: str) -> ParsedStructure:
    one_model = None
    if binary:
        pdbx_file = pdbx.BinaryCIFFile.read(io.BytesIO(raw))
    else:
        text = _decode_text(raw)
        one_model = keep_one_model(text, model)
        pdbx_file = pdbx.CIFFile.read(io.StringIO(one_model[0] if one_model else text))
    block = pdbx_file.block
    if "atom_site" not in block:
        raise ValueError("no atom_site category (no coordinates)")
    model_count = one_model[1] if one_model else pdbx.get_model_count(pdbx_file)
    _check_model(model, model_count)
    model_in_file = 1 if one_model else model
    atoms = pdbx.get_structure(pdbx_file, model=model_in_file, altloc=altloc, extra_fields=["b_factor", "occupancy"])
    method = ";".join(_column_strings(block, "exptl", "method"))
    resolution = math.nan
    for category, key in (
        ("refine", "ls_d_res_high"),
        ("em_3d_reconstruction", "resolution"),
        ("reflns", "d_resolution_high"),
    ):
        values = [_float_or_nan(v) for v in _column_strings(block, category, key)]
        values = [v for v in values if not math.isnan(v)]
        if values:
            resolution = min(values)
            break
    entry_ids = _column_strings(block, "entry", "id")
    entry_id = entry_ids[0].lower() if entry_ids else ""
    return ParsedStructure(atoms, model_count, method, resolution, entry_id)


def _decode_text(raw: bytes) -> str:
    """UTF-8 text; Latin-1 for the odd legacy byte in remarks; ValueError for binary data."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        sample = raw[:65536]
        binary_bytes = sum(b >= 0x80 or (b < 0x20 and b not in b"\t\n\r") for b in sample)
        if binary_bytes > 0.01 * len(sample):
            raise ValueError(
                f"binary data where text was expected ({binary_bytes} of the first {len(sample)} bytes are "
                f"not text; {error.reason} at byte {error.start}): not a PDB/mmCIF text file"
            ) from None
        return raw.decode("latin-1")


def _check_model(model: int, model_count: int) -> None:
    if model > model_count:
        raise ValueError(f"model {model} requested but the file holds {model_count} model(s)")


def _column_strings(block, category: str, key: str) -> list[str]:
    """Present values of block[category][key] as strings ([] when absent, '?' or '.')."""
    if category not in block or key not in block[category]:
        return []
    column = block[category][key]
    values = column.as_array(str)
    if column.mask is not None:
        present = column.mask.array == pdbx.MaskValue.PRESENT
        values = values[present]
    return [str(v).strip() for v in values if str(v).strip() not in ("", "?", ".")]


def _float_or_nan(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) and value > 0 else math.nan
