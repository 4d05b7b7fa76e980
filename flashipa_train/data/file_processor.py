"""Turn one input structure file into accepted examples and rejected rows, and record that it is done.

Runs inside preprocessing worker processes. Every failure becomes a rejected row with the error's
message; nothing here raises for a bad input file.
"""

import hashlib
import json
import math
import os
import re
from collections import Counter

import biotite.structure as struc
import biotite.structure.info  # noqa: F401 - struc.info

from flashipa_train.data.chain_features import (
    ChainBackbone,
    ca_radius_of_gyration,
    chain_backbone,
    chain_break_after,
    protein_chain_atoms,
    split_at_breaks,
    sse_fractions,
)
from flashipa_train.data.example_store import EXAMPLES_DIR, RECORDS_DIR, atomic_write_bytes, save_example
from flashipa_train.data.preprocess_config import PreprocessConfig
from flashipa_train.data.residue_constants import sequence_from_aatype
from flashipa_train.data.structure_reader import parse_structure

# Rejection reasons (the `reason` column of rejected.csv).
UNREADABLE = "unreadable"
RESOLUTION = "resolution"
NO_PROTEIN = "no_protein"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
MISSING_BACKBONE = "missing_backbone"
COIL_FRACTION = "coil_fraction"
CHAIN_ERROR = "chain_error"

FILE_LEVEL = "-"  # `chain` value of rows about the whole file


def load_residue_dictionaries() -> None:
    """Load biotite's Chemical Component Dictionary tables now (~0.2 s).

    Called in the parent before forking workers, so each worker inherits them instead of loading its own.
    """
    struc.info.amino_acid_names()
    struc.info.nucleotide_names()


def record_path(out_dir: str, checksum: str) -> str:
    return os.path.join(out_dir, RECORDS_DIR, f"{checksum}.json")


def process_structure_file(path: str, config: PreprocessConfig, out_dir: str) -> dict:
    """Process one file unless its checksum already has a record in `out_dir`.

    Returns {"status": "done" | "new", "record": {...}} where the record holds the file's
    "accepted" (metadata rows) and "rejected" (rejected rows) lists.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        # No content to hash: the record is keyed by the path, and a rerun retries the file.
        checksum = _unreadable_path_key(path)
        message = f"{type(error).__name__}: {error}"
        record = _record(path, checksum, [], [_rejected(path, checksum, FILE_LEVEL, UNREADABLE, message)])
        atomic_write_bytes(record_path(out_dir, checksum), json.dumps(record).encode("utf-8"))
        return {"status": "new", "record": record}
    stale = record_path(out_dir, _unreadable_path_key(path))
    if os.path.exists(stale):
        os.remove(stale)
    checksum = hashlib.sha256(raw).hexdigest()
    done_path = record_path(out_dir, checksum)
    if os.path.exists(done_path):
        with open(done_path) as f:
            return {"status": "done", "record": json.load(f)}
    try:
        record = _examples_of_file(path, raw, checksum, config, out_dir)
    except Exception as error:  # noqa: BLE001 - any parser failure is a rejection, never a crash
        message = f"{type(error).__name__}: {error}".strip()
        record = _record(path, checksum, [], [_rejected(path, checksum, FILE_LEVEL, UNREADABLE, message)])
    atomic_write_bytes(done_path, json.dumps(record).encode("utf-8"))
    return {"status": "new", "record": record}


def _unreadable_path_key(path: str) -> str:
    return "unreadable-path-" + hashlib.sha256(path.encode()).hexdigest()


def _examples_of_file(path: str, raw: bytes, checksum: str, config: PreprocessConfig, out_dir: str) -> dict:
    parsed = parse_structure(path, raw, model=config.model, altloc=config.altloc)
    resolution_problem = _resolution_problem(parsed.resolution, config)
    if resolution_problem:
        return _record(path, checksum, [], [_rejected(path, checksum, FILE_LEVEL, RESOLUTION, resolution_problem)])
    chains = protein_chain_atoms(parsed.atoms)
    if not chains:
        message = f"no amino-acid residues in model {config.model}; {_residue_summary(parsed.atoms)}"
        return _record(path, checksum, [], [_rejected(path, checksum, FILE_LEVEL, NO_PROTEIN, message)])

    accepted, rejected = [], []
    for chain_id, chain_atoms in chains:
        try:
            backbone = chain_backbone(chain_id, chain_atoms)
            breaks = chain_break_after(backbone, config.chain_break_distance)
            segments = split_at_breaks(backbone, breaks) if config.split_chain_breaks else [backbone]
            for segment in segments:
                segment_breaks = int(chain_break_after(segment, config.chain_break_distance).sum())
                label = chain_id if not config.split_chain_breaks else f"{chain_id}[{segment.segment}]"
                problem = _chain_problem(segment, config)
                if problem:
                    rejected.append(_rejected(path, checksum, label, *problem))
                    continue
                example = _example_name(parsed.entry_id, checksum, chain_id, segment.segment)
                _save_backbone(os.path.join(out_dir, example), segment)
                accepted.append(_metadata_row(example, path, parsed, checksum, segment, segment_breaks))
        except Exception as error:  # noqa: BLE001 - one odd chain must not lose the file's other chains
            rejected.append(_rejected(path, checksum, chain_id, CHAIN_ERROR, f"{type(error).__name__}: {error}"))
    return _record(path, checksum, accepted, rejected)


def _resolution_problem(resolution: float, config: PreprocessConfig) -> str:
    if math.isnan(resolution):
        return (
            "" if config.allow_missing_resolution else "header gives no resolution and allow_missing_resolution=False"
        )
    if resolution > config.max_resolution:
        return f"resolution {resolution:.2f} Å > max_resolution {config.max_resolution} Å"
    return ""


def _chain_problem(backbone: ChainBackbone, config: PreprocessConfig) -> tuple[str, str] | None:
    """(reason, message) when the chain fails a filter, else None."""
    if backbone.length < config.min_length:
        return TOO_SHORT, f"length {backbone.length} < min_length {config.min_length}"
    if backbone.length > config.max_length:
        return TOO_LONG, f"length {backbone.length} > max_length {config.max_length}"
    missing = 1.0 - float(backbone.atom_mask.mean())
    if missing > config.max_missing_backbone_fraction:
        return MISSING_BACKBONE, (
            f"missing backbone atom fraction {missing:.3f} > max_missing_backbone_fraction "
            f"{config.max_missing_backbone_fraction}"
        )
    coil = sse_fractions(backbone.sse)["coil_fraction"]
    if not coil <= config.max_coil_fraction:  # NaN (no residue labelled) is rejected too
        return COIL_FRACTION, f"coil fraction {coil:.3f} > max_coil_fraction {config.max_coil_fraction}"
    return None


def _residue_summary(atoms: struc.AtomArray) -> str:
    starts = struc.get_residue_starts(atoms)
    counts = Counter(atoms.res_name[starts].tolist()).most_common(6)
    kinds = []
    if struc.filter_nucleotides(atoms).any():
        kinds.append("nucleic acid")
    named = ", ".join(f"{name} x{count}" for name, count in counts)
    return f"{'found ' + ' and '.join(kinds) + '; ' if kinds else ''}residues present: {named}"


def _example_name(entry_id: str, checksum: str, chain_id: str, segment: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", f"{entry_id}_{checksum[:10]}_{chain_id}_{segment}")
    return os.path.join(EXAMPLES_DIR, f"{safe}.npz")


def _save_backbone(path: str, backbone: ChainBackbone) -> None:
    save_example(
        path,
        {
            "atoms": backbone.atoms,
            "atom_mask": backbone.atom_mask,
            "b_factors": backbone.b_factors,
            "aatype": backbone.aatype,
            "residue_number": backbone.residue_number,
            "insertion_code": backbone.insertion_code,
            "residue_index": backbone.residue_index,
        },
    )


def _metadata_row(example, path, parsed, checksum, backbone: ChainBackbone, chain_breaks: int) -> dict:
    fractions = sse_fractions(backbone.sse)
    return {
        "example": example,
        "source": path,
        "entry": parsed.entry_id,
        "checksum": checksum,
        "chain": backbone.chain_id,
        "segment": backbone.segment,
        "length": backbone.length,
        "modelled_fraction": round(float(backbone.atom_mask.mean()), 4),
        "method": parsed.method,
        "resolution": "" if math.isnan(parsed.resolution) else parsed.resolution,
        **{key: round(value, 4) for key, value in fractions.items()},
        "radius_of_gyration": round(ca_radius_of_gyration(backbone), 3),
        "chain_breaks": chain_breaks,
        "sequence": sequence_from_aatype(backbone.aatype),
    }


def _rejected(path: str, checksum: str, chain: str, reason: str, message: str) -> dict:
    return {"source": path, "checksum": checksum, "chain": chain, "reason": reason, "message": message}


def _record(path: str, checksum: str, accepted: list[dict], rejected: list[dict]) -> dict:
    return {"source": path, "checksum": checksum, "accepted": accepted, "rejected": rejected}
