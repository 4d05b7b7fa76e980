"""Preprocessing: every input file becomes examples or reasoned rejections; resumable; atomic outputs."""

import csv
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flashipa_train.data.example_store import METADATA_FILE, RECORDS_DIR, REJECTED_FILE, load_example
from flashipa_train.data.preprocess import main, preprocess

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"
SHARED_PDB = REPO.parent / "shared" / "pdb"


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def data_dir_cache(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data_cache")
    preprocess([str(DATA_DIR)], str(out), progress=False)
    return out


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> tuple[Path, object]:
    if not SHARED_PDB.is_dir():
        pytest.skip(f"{SHARED_PDB} not present (only in the development checkout)")
    out = tmp_path_factory.mktemp("shared_cache")
    summary = preprocess([str(SHARED_PDB)], str(out), progress=False)
    return out, summary


def test_every_shared_file_is_accepted_or_rejected_with_a_reason(shared_cache):
    out, summary = shared_cache
    inputs = sorted(str(p) for p in SHARED_PDB.rglob("*") if p.suffix in (".pdb", ".cif", ".bcif") and p.is_file())
    accepted = read_csv(out / METADATA_FILE)
    rejected = read_csv(out / REJECTED_FILE)
    accounted = {row["source"] for row in accepted} | {row["source"] for row in rejected}
    assert sorted(os.path.normpath(p) for p in inputs) == sorted(accounted)
    assert summary.files_in == len(inputs) == summary.files_accepted + summary.files_rejected
    assert all(row["reason"] and row["message"] for row in rejected)


def test_nucleic_acid_only_entries_are_rejected_as_no_protein(shared_cache):
    out, _ = shared_cache
    rejected = read_csv(out / REJECTED_FILE)
    for entry in ("4gxy", "4p5j"):
        rows = [r for r in rejected if Path(r["source"]).name.startswith(entry)]
        assert len(rows) == 3  # .pdb, .cif, .bcif
        assert all(r["reason"] == "no_protein" and "nucleic acid" in r["message"] for r in rows)


def test_default_data_set_has_accepted_and_rejected_rows(data_dir_cache):
    accepted = read_csv(data_dir_cache / METADATA_FILE)
    rejected = read_csv(data_dir_cache / REJECTED_FILE)
    assert len(accepted) >= 20
    reasons = {r["reason"] for r in rejected}
    assert {"no_protein", "too_short", "too_long", "resolution"} <= reasons
    sources = {r["source"] for r in accepted} | {r["source"] for r in rejected}
    assert len(sources) == len(list(DATA_DIR.glob("*.gz")))


def test_consecutive_ca_distances_are_peptide_like(data_dir_cache):
    """Real data sanity: bonded CA-CA distances cluster at 3.8 Å (cis-Pro ~2.9, breaks > 4.2)."""
    distances = []
    for row in read_csv(data_dir_cache / METADATA_FILE):
        example = load_example(str(data_dir_cache / row["example"]))
        has_ca = example["atom_mask"][:, 1]
        ca = example["atoms"][:, 1]
        both = has_ca[1:] & has_ca[:-1]
        distances.append(np.linalg.norm(ca[1:] - ca[:-1], axis=-1)[both])
    distances = np.concatenate(distances)
    assert abs(np.median(distances) - 3.80) < 0.02
    assert np.mean(np.abs(distances - 3.80) < 0.1) > 0.97


def test_example_arrays_have_consistent_shapes_and_dtypes(data_dir_cache):
    row = read_csv(data_dir_cache / METADATA_FILE)[0]
    example = load_example(str(data_dir_cache / row["example"]))
    length = int(row["length"])
    assert example["atoms"].shape == (length, 4, 3) and example["atoms"].dtype == np.float32
    assert example["atom_mask"].shape == (length, 4) and example["atom_mask"].dtype == bool
    assert example["b_factors"].shape == (length, 4)
    assert example["aatype"].shape == (length,) and example["aatype"].max() <= 20
    assert np.all(np.diff(example["residue_index"]) >= 1)
    assert np.all(example["atoms"][~example["atom_mask"]] == 0)


def bad_files(folder: Path) -> dict[str, str]:
    """Write broken inputs; returns file name -> expected reason."""
    rng = np.random.default_rng(0)
    cif = (SHARED_PDB / "biotite" / "1aki.cif").read_bytes() if SHARED_PDB.is_dir() else None
    text = gzip.decompress((DATA_DIR / "1aki.pdb.gz").read_bytes())
    files = {
        "random_bytes.pdb": (rng.bytes(4096), "unreadable"),
        "random_bytes.bcif": (rng.bytes(4096), "unreadable"),
        "empty.cif": (b"", "unreadable"),
        "truncated.pdb.gz": (gzip.compress(text)[:5000], "unreadable"),
        "truncated_mid_line.pdb": (text[: len(text) // 2 + 7], "unreadable"),
        "dna_only.pdb.gz": ((DATA_DIR / "4gxy.pdb.gz").read_bytes(), "no_protein"),
        "ligand_only.pdb.gz": ((DATA_DIR / "hetatm.pdb.gz").read_bytes(), "no_protein"),
    }
    if cif is not None:
        files["truncated.cif"] = (cif[: len(cif) // 2], "unreadable")
    for name, (content, _) in files.items():
        (folder / name).write_bytes(content)
    return {name: reason for name, (_, reason) in files.items()}


def test_broken_and_non_protein_files_give_rejected_rows_not_crashes(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    expected = bad_files(inputs)
    summary = preprocess([str(inputs)], str(tmp_path / "out"), progress=False)
    rejected = read_csv(tmp_path / "out" / REJECTED_FILE)
    got = {Path(r["source"]).name: r for r in rejected}
    assert {name: got[name]["reason"] for name in expected} == expected
    assert all(got[name]["message"] for name in expected)
    assert summary.files_rejected == len(expected) and summary.chains_accepted == 0


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    files = sorted(DATA_DIR.glob("*.gz"))
    first_half = [str(p) for p in files[: len(files) // 2]]
    resumed, fresh = tmp_path / "resumed", tmp_path / "fresh"
    preprocess(first_half, str(resumed), progress=False)
    # A crash mid-write leaves temp files and examples without a record: they must not matter.
    (resumed / "examples" / ".tmp-partial.npz").write_bytes(b"partial")
    summary = preprocess([str(DATA_DIR)], str(resumed), progress=False)
    preprocess([str(DATA_DIR)], str(fresh), progress=False)
    assert summary.files_already_done == len(first_half)
    assert summary.files_accepted + summary.files_rejected == len(files) - len(first_half)
    for table in (METADATA_FILE, REJECTED_FILE):
        assert (resumed / table).read_text() == (fresh / table).read_text()


def test_killed_process_resumes_without_losing_or_duplicating_rows(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "flashipa_train.data.preprocess",
        str(DATA_DIR),
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / RECORDS_DIR).glob("*.json"))) < 5 and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / METADATA_FILE).exists(), "the run finished before it was killed; nothing was tested"
    assert main([str(DATA_DIR), "--out", str(out), "--no-progress"]) == 0
    preprocess([str(DATA_DIR)], str(tmp_path / "fresh"), progress=False)
    for table in (METADATA_FILE, REJECTED_FILE):
        assert (out / table).read_text() == (tmp_path / "fresh" / table).read_text()


def test_two_workers_give_the_same_tables_as_one(tmp_path, data_dir_cache):
    preprocess([str(DATA_DIR)], str(tmp_path / "two"), workers=2, progress=False)
    for table in (METADATA_FILE, REJECTED_FILE):
        assert (tmp_path / "two" / table).read_text() == (data_dir_cache / table).read_text()


def test_changed_settings_on_an_existing_directory_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(DATA_DIR / "1qys.pdb.gz"), "--out", str(out), "--no-progress"]) == 0
    assert main([str(DATA_DIR / "1qys.pdb.gz"), "--out", str(out), "--min-length", "30", "--no-progress"]) == 2
    assert "min_length" in capsys.readouterr().err


def test_input_matching_nothing_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope*.cif"), "--out", str(tmp_path / "out")]) == 2
    assert "matches no file" in capsys.readouterr().err


def test_split_chain_breaks_stores_break_free_segments(tmp_path):
    source = str(DATA_DIR / "5an7.pdb.gz")  # chain A has 2 CA-CA breaks
    main([source, "--out", str(tmp_path / "whole"), "--no-progress"])
    main([source, "--out", str(tmp_path / "split"), "--split-chain-breaks", "--min-length", "1", "--no-progress"])
    whole = read_csv(tmp_path / "whole" / METADATA_FILE)
    split = read_csv(tmp_path / "split" / METADATA_FILE)
    assert [int(r["chain_breaks"]) for r in whole] == [2]
    assert len(split) == 3 and all(int(r["chain_breaks"]) == 0 for r in split)
    assert sum(int(r["length"]) for r in split) == int(whole[0]["length"])


def test_data_readme_lists_every_default_structure_file():
    readme = (DATA_DIR / "README.md").read_text()
    files = sorted(p.name for p in DATA_DIR.glob("*.gz"))
    assert len(files) >= 30
    assert [name for name in files if f"`{name}`" not in readme] == []


def test_unreadable_file_is_rejected_and_retried_once_readable(tmp_path):
    """A dangling symlink stands for any file that cannot be opened (permissions, I/O errors)."""
    target = tmp_path / "elsewhere" / "1qys.pdb.gz"
    link = tmp_path / "in" / "link.pdb.gz"
    link.parent.mkdir()
    link.symlink_to(target)
    out = tmp_path / "out"
    preprocess([str(link.parent)], str(out), progress=False)
    rows = read_csv(out / REJECTED_FILE)
    assert [(r["reason"], "FileNotFoundError" in r["message"]) for r in rows] == [("unreadable", True)]
    target.parent.mkdir()
    shutil.copy(DATA_DIR / "1qys.pdb.gz", target)
    preprocess([str(link.parent)], str(out), progress=False)
    assert read_csv(out / REJECTED_FILE) == [] and len(read_csv(out / METADATA_FILE)) == 1
