"""The preprocessing cache follows its inputs: edited, deleted, renamed and added files; bad command-line values
and a folder with a structure name get one-line errors or rejected rows."""

import csv
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("biotite")

from flashipa_train.data.example_store import INPUTS_FILE, METADATA_FILE, REJECTED_FILE  # noqa: E402
from flashipa_train.data.preprocess import main, preprocess  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def _rows(out: Path, table: str = METADATA_FILE) -> list[dict]:
    with open(out / table, newline="") as f:
        return list(csv.DictReader(f))


def _sources(out: Path) -> dict[str, str]:
    """{file name: entry} of the accepted examples."""
    return {Path(r["source"]).name: r["entry"] for r in _rows(out)}


@pytest.fixture
def folder(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(DATA / "1qys.pdb.gz", inputs / "first.pdb.gz")
    shutil.copy(DATA / "4zey.cif.gz", inputs / "second.cif.gz")
    return inputs


def test_an_edited_file_replaces_its_examples(folder, tmp_path):
    out = tmp_path / "out"
    preprocess([str(folder)], str(out), progress=False)
    assert _sources(out) == {"first.pdb.gz": "1qys", "second.cif.gz": "4zey"}
    shutil.copy(DATA / "3u8v.cif.gz", folder / "second.cif.gz")  # same name, new content (two chains)
    summary = preprocess([str(folder)], str(out), progress=False)
    assert _sources(out) == {"first.pdb.gz": "1qys", "second.cif.gz": "3u8v"} and len(_rows(out)) == 3
    assert summary.files_changed == [str(folder / "second.cif.gz")]
    assert "1 files changed since the last run" in summary.report()


def test_a_deleted_file_is_dropped_and_listed_as_removed(folder, tmp_path):
    out = tmp_path / "out"
    preprocess([str(folder)], str(out), progress=False)
    (folder / "first.pdb.gz").unlink()
    summary = preprocess([str(folder)], str(out), progress=False)
    assert _sources(out) == {"second.cif.gz": "4zey"}
    assert summary.files_removed == [str(folder / "first.pdb.gz")]
    assert f"removed since the last run (dropped from the tables): {folder / 'first.pdb.gz'}" in summary.report()


def test_a_renamed_file_keeps_its_examples_under_the_new_name_without_reprocessing(folder, tmp_path):
    out = tmp_path / "out"
    preprocess([str(folder)], str(out), progress=False)
    (folder / "first.pdb.gz").rename(folder / "renamed.pdb.gz")
    summary = preprocess([str(folder)], str(out), progress=False)
    assert _sources(out) == {"renamed.pdb.gz": "1qys", "second.cif.gz": "4zey"}
    assert summary.files_already_done == 2 and summary.files_removed == [str(folder / "first.pdb.gz")]
    assert all((out / r["example"]).is_file() for r in _rows(out))


def test_an_added_file_is_processed_and_the_inputs_list_records_every_checksum(folder, tmp_path):
    out = tmp_path / "out"
    preprocess([str(folder)], str(out), progress=False)
    shutil.copy(DATA / "3u8v.cif.gz", folder / "third.cif.gz")
    summary = preprocess([str(folder)], str(out), progress=False)
    assert summary.files_accepted == 1 and summary.files_already_done == 2
    assert set(_sources(out)) == {"first.pdb.gz", "second.cif.gz", "third.cif.gz"}
    inputs = json.loads((out / INPUTS_FILE).read_text())["inputs"]
    assert [Path(i["path"]).name for i in inputs] == ["first.pdb.gz", "second.cif.gz", "third.cif.gz"]
    assert all(len(i["checksum"]) == 64 for i in inputs)


def test_a_datamodule_cache_follows_a_deleted_file(folder, tmp_path):
    from flashipa_train.data.datamodule import BackboneDataModule

    def examples():
        datamodule = BackboneDataModule(
            pdb_dir=str(folder),
            cache_dir=str(tmp_path / "cache"),
            crop_length=32,
            max_tokens_per_batch=64,
            val_fraction=0.0,
            preprocess={"min_length": 20},
        )
        datamodule.prepare_data()
        datamodule.setup()
        return sorted(Path(r["source"]).name for r in datamodule.train_dataset.rows)

    assert examples() == ["first.pdb.gz", "second.cif.gz"]
    (folder / "first.pdb.gz").unlink()
    assert examples() == ["second.cif.gz"]


def test_a_folder_with_a_structure_name_gets_a_rejected_row(folder, tmp_path):
    (folder / "looks_like.pdb").mkdir()
    preprocess([str(folder)], str(tmp_path / "out"), progress=False)
    rows = {Path(r["source"]).name: r for r in _rows(tmp_path / "out", REJECTED_FILE)}
    assert rows["looks_like.pdb"]["reason"] == "unreadable"
    assert "IsADirectoryError" in rows["looks_like.pdb"]["message"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-length", "0"], "min_length=0, max_length=512"),
        (["--out-is-a-file"], "is a file; pass a folder"),
        (["--workers", "0"], "--workers 0"),
    ],
)
def test_bad_command_line_values_get_one_line(folder, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    if args == ["--out-is-a-file"]:
        out.write_text("")
        args = []
    assert main([str(folder), "--out", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flashipa-preprocess: error: ") and message in err[0]
