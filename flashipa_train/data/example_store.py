"""On-disk layout of a preprocessed directory, shared by the preprocessor (writer) and the DataModule.

    DIR/format.json          format version and the filter settings the directory was built with
    DIR/examples/*.npz       one compressed example per accepted chain (or chain segment)
    DIR/records/<sha256>.json  one record per finished input file: its accepted and rejected rows
    DIR/metadata.csv         accepted examples, rebuilt from the records at the end of every run
    DIR/rejected.csv         rejected files/chains with reasons, rebuilt likewise
    DIR/inputs.json          the input files (path, sha256) the two tables were built from

Free of biotite and torch: training only reads this.
"""

import csv
import io
import json
import os
import tempfile

import numpy as np

FORMAT_VERSION = 1
FORMAT_FILE = "format.json"
METADATA_FILE = "metadata.csv"
REJECTED_FILE = "rejected.csv"
INPUTS_FILE = "inputs.json"
EXAMPLES_DIR = "examples"
RECORDS_DIR = "records"

METADATA_COLUMNS = (
    "example",  # npz path relative to DIR
    "source",  # input file path
    "entry",  # PDB id from the header, else the file name
    "checksum",  # sha256 of the input file's bytes
    "chain",
    "segment",  # 0 unless chains are split at breaks
    "length",
    "modelled_fraction",  # fraction of the 4*L backbone atoms (N, CA, C, O) that are modelled
    "method",
    "resolution",  # Å, empty when the header gives none
    "helix_fraction",
    "strand_fraction",
    "coil_fraction",
    "radius_of_gyration",  # Å, over CA atoms
    "chain_breaks",  # consecutive CA-CA distances above the break limit
    "sequence",  # one-letter, X for unknown
)
REJECTED_COLUMNS = ("source", "checksum", "chain", "reason", "message")

# Arrays in every example .npz; shapes use L = number of residues.
EXAMPLE_ARRAYS = {
    "atoms": np.float32,  # [L, 4, 3]
    "atom_mask": np.bool_,  # [L, 4]
    "b_factors": np.float32,  # [L, 4]
    "aatype": np.int8,  # [L]
    "residue_number": np.int32,  # [L]
    "insertion_code": np.str_,  # [L]
    "residue_index": np.int32,  # [L]
}


class PreprocessedDirError(RuntimeError):
    """A preprocessed directory is missing, empty, or was written by an incompatible version."""


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    directory = os.path.dirname(path) or "."
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        raise


def atomic_write_csv(path: str, columns: tuple[str, ...], rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def save_example(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write one example's arrays (the keys of EXAMPLE_ARRAYS) as compressed .npz."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{key: np.asarray(arrays[key], dtype=dtype) for key, dtype in EXAMPLE_ARRAYS.items()})
    atomic_write_bytes(path, buffer.getvalue())


def load_example(path: str) -> dict[str, np.ndarray]:
    """The arrays of one example .npz (see EXAMPLE_ARRAYS)."""
    with np.load(path) as npz:
        return {key: npz[key] for key in EXAMPLE_ARRAYS}


def read_format(directory: str) -> dict | None:
    """Contents of DIR/format.json, or None when the file does not exist."""
    path = os.path.join(directory, FORMAT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_format_version(directory: str, found: dict | None) -> None:
    """Raise PreprocessedDirError unless `found` (from read_format) has this FORMAT_VERSION."""
    if found is None:
        raise PreprocessedDirError(
            f"{directory} has no {FORMAT_FILE}: it is not a directory written by flashipa-preprocess. "
            f"Run `flashipa-preprocess YOUR_STRUCTURES --out {directory}` (or give the DataModule pdb_dir=...)."
        )
    version = found.get("format_version")
    if version != FORMAT_VERSION:
        raise PreprocessedDirError(
            f"{directory}/{FORMAT_FILE} has format_version={version!r} but this code reads version "
            f"{FORMAT_VERSION}. Preprocess the structures again into a fresh directory."
        )


def read_metadata(directory: str) -> list[dict]:
    """Rows of DIR/metadata.csv after checking the directory exists, is compatible and is not empty."""
    if not os.path.isdir(directory):
        raise PreprocessedDirError(
            f"preprocessed directory {directory!r} does not exist. Run "
            f"`flashipa-preprocess YOUR_STRUCTURES --out {directory}` or give the DataModule pdb_dir=..."
        )
    check_format_version(directory, read_format(directory))
    path = os.path.join(directory, METADATA_FILE)
    if not os.path.exists(path):
        raise PreprocessedDirError(
            f"{path} does not exist: preprocessing into {directory} never finished. Run flashipa-preprocess "
            f"again with the same inputs and --out {directory}; it resumes where it stopped."
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise PreprocessedDirError(
            f"{path} lists no accepted examples; every input was rejected, see "
            f"{os.path.join(directory, REJECTED_FILE)} for the reasons."
        )
    missing = [c for c in METADATA_COLUMNS if c not in rows[0]]
    if missing:
        raise PreprocessedDirError(f"{path} lacks columns {missing}; preprocess again into a fresh directory.")
    return rows
