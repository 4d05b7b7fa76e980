"""`flashipa-preprocess INPUT... --out DIR`: structure files to training examples, resumably and in parallel.

Every input file ends up either with accepted examples in DIR/metadata.csv or with rows in
DIR/rejected.csv saying why. A killed run restarted with the same DIR skips the files whose checksum
already has a record, so no row is lost or duplicated.

The tables follow the inputs of the latest run: they are rebuilt from the records of exactly the files
given now (DIR/inputs.json lists them with their checksums), so a file edited since the last run
replaces its examples, a renamed file keeps its examples under its new name, and a file no longer given
is dropped from the tables and listed in the summary as removed. Records of earlier inputs stay on disk,
so a file that comes back is not processed again.
"""

import argparse
import csv
import glob
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from functools import partial

from tqdm import tqdm

from flashipa_train.data.example_store import (
    EXAMPLES_DIR,
    FORMAT_FILE,
    FORMAT_VERSION,
    INPUTS_FILE,
    METADATA_COLUMNS,
    METADATA_FILE,
    RECORDS_DIR,
    REJECTED_COLUMNS,
    REJECTED_FILE,
    PreprocessedDirError,
    atomic_write_bytes,
    atomic_write_csv,
    check_format_version,
    read_format,
)
from flashipa_train.data.file_processor import load_residue_dictionaries, process_structure_file
from flashipa_train.data.preprocess_config import PreprocessConfig
from flashipa_train.data.structure_reader import is_structure_file_name


@dataclass
class PreprocessSummary:
    """What one preprocessing run did; `files_in == files_accepted + files_rejected + files_already_done`."""

    files_in: int = 0
    files_accepted: int = 0  # processed now, at least one example
    files_rejected: int = 0  # processed now, no example
    files_already_done: int = 0  # skipped: a record with the same checksum existed
    files_changed: list = field(default_factory=list)  # paths whose content differs from the last run's
    files_removed: list = field(default_factory=list)  # paths in the last run's tables but not given now
    chains_accepted: int = 0  # examples written now
    rejections_by_reason: Counter = field(default_factory=Counter)  # rows written now
    seconds: float = 0.0
    total_examples: int = 0  # in DIR/metadata.csv after this run
    total_rejected_rows: int = 0  # in DIR/rejected.csv after this run

    @property
    def structures_per_second(self) -> float:
        processed = self.files_accepted + self.files_rejected
        return processed / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        reasons = ", ".join(f"{r}={n}" for r, n in sorted(self.rejections_by_reason.items())) or "none"
        return (
            f"files in: {self.files_in} = {self.files_accepted} with accepted chains + {self.files_rejected} "
            f"fully rejected + {self.files_already_done} already done (same checksum as a recorded file)\n"
            f"chains accepted: {self.chains_accepted}; rejections by reason: {reasons}\n"
            f"{self.structures_per_second:.1f} structures/s ({self.files_accepted + self.files_rejected} files "
            f"in {self.seconds:.1f} s)\n"
            f"{_listed('changed since the last run (examples replaced)', self.files_changed)}"
            f"{_listed('removed since the last run (dropped from the tables)', self.files_removed)}"
            f"directory now holds {self.total_examples} examples and {self.total_rejected_rows} rejected rows"
        )


def _listed(what: str, paths: list[str]) -> str:
    if not paths:
        return ""
    shown = ", ".join(paths[:10]) + (f" ... ({len(paths)} in all)" if len(paths) > 10 else "")
    return f"{len(paths)} files {what}: {shown}\n"


def find_structure_files(inputs: list[str]) -> list[str]:
    """Files named by `inputs`: files as given, folders searched recursively, globs expanded.

    Inside folders only structure names (.pdb .ent .cif .mmcif .bcif, optionally .gz) are taken; a folder
    with such a name is returned too, so that it gets a rejected row instead of vanishing.
    Raises FileNotFoundError naming an input that matches nothing.
    """
    found: dict[str, str] = {}  # realpath -> path as found, keeps first occurrence order
    for item in inputs:
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        matches = [m for m in matches if os.path.exists(m)]
        if not matches:
            raise FileNotFoundError(f"input {item!r} matches no file or folder")
        for match in matches:
            if os.path.isdir(match):
                for root, dirs, files in os.walk(match):
                    dirs.sort()
                    for name in sorted(files + [d for d in dirs if is_structure_file_name(d)]):
                        if is_structure_file_name(name) and not name.startswith("."):
                            path = os.path.normpath(os.path.join(root, name))
                            found.setdefault(os.path.realpath(path), path)
            else:
                found.setdefault(os.path.realpath(match), os.path.normpath(match))
    return list(found.values())


def prepare_output_dir(out_dir: str, config: PreprocessConfig) -> None:
    """Create DIR with its format.json, or check an existing DIR was built with this version and config."""
    os.makedirs(os.path.join(out_dir, EXAMPLES_DIR), exist_ok=True)
    os.makedirs(os.path.join(out_dir, RECORDS_DIR), exist_ok=True)
    found = read_format(out_dir)
    if found is None:
        content = {"format_version": FORMAT_VERSION, "config": config.to_dict()}
        atomic_write_bytes(os.path.join(out_dir, FORMAT_FILE), json.dumps(content, indent=2).encode())
        return
    check_format_version(out_dir, found)
    if found.get("config") != config.to_dict():
        differing = {
            k: (found.get("config", {}).get(k), v)
            for k, v in config.to_dict().items()
            if found.get("config", {}).get(k) != v
        }
        raise PreprocessedDirError(
            f"{out_dir} was preprocessed with other settings (key: (stored, requested)) {differing}. "
            f"Use the same settings to resume, or a fresh --out directory."
        )


def write_tables(out_dir: str, records: list[tuple[str, dict]]) -> tuple[int, int]:
    """Rebuild DIR/metadata.csv, DIR/rejected.csv and DIR/inputs.json from the records of this run's inputs
    ((path, record) pairs); rows carry the path as given now. Returns the two tables' row counts."""
    accepted, rejected, inputs, seen = [], [], [], set()
    for path, record in sorted(records, key=lambda item: item[0]):
        inputs.append({"path": path, "checksum": record["checksum"]})
        if record["checksum"] in seen:
            continue  # the same bytes under two names: train on them once
        seen.add(record["checksum"])
        accepted.extend({**row, "source": path} for row in record["accepted"])
        rejected.extend({**row, "source": path} for row in record["rejected"])
    accepted.sort(key=lambda row: (row["source"], row["chain"], int(row["segment"])))
    rejected.sort(key=lambda row: (row["source"], row["chain"]))
    atomic_write_csv(os.path.join(out_dir, METADATA_FILE), METADATA_COLUMNS, accepted)
    atomic_write_csv(os.path.join(out_dir, REJECTED_FILE), REJECTED_COLUMNS, rejected)
    atomic_write_bytes(os.path.join(out_dir, INPUTS_FILE), json.dumps({"inputs": inputs}, indent=1).encode())
    return len(accepted), len(rejected)


def previous_inputs(out_dir: str) -> dict[str, str]:
    """{path: checksum} of the inputs the tables of DIR were last built from (empty for a new DIR)."""
    path = os.path.join(out_dir, INPUTS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return {item["path"]: item["checksum"] for item in json.load(f)["inputs"]}
    previous = {}  # a DIR written before inputs.json existed: its tables name the sources
    for table in (METADATA_FILE, REJECTED_FILE):
        if os.path.exists(os.path.join(out_dir, table)):
            with open(os.path.join(out_dir, table), newline="") as f:
                previous.update({row["source"]: row["checksum"] for row in csv.DictReader(f)})
    return previous


def preprocess(
    inputs: list[str],
    out_dir: str,
    config: PreprocessConfig = PreprocessConfig(),
    workers: int = 1,
    progress: bool = True,
) -> PreprocessSummary:
    """Preprocess `inputs` (files, folders, globs) into `out_dir`; resumable; returns the run's summary."""
    paths = find_structure_files(inputs)
    prepare_output_dir(out_dir, config)
    before = previous_inputs(out_dir)
    summary = PreprocessSummary(files_in=len(paths))
    start = time.perf_counter()
    load_residue_dictionaries()
    work = partial(process_structure_file, config=config, out_dir=out_dir)
    bar = tqdm(total=len(paths), unit="file", desc="preprocess", disable=not progress, file=sys.stderr)
    if workers <= 1:
        records = _collect(zip(paths, map(work, paths)), summary, bar)
    else:
        # fork keeps start-up cheap; the parent holds no threads or GPU state at this point.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            records = _collect(zip(paths, pool.imap(work, paths, chunksize=1)), summary, bar)
    bar.close()
    summary.seconds = time.perf_counter() - start
    summary.total_examples, summary.total_rejected_rows = write_tables(out_dir, records)
    now = {path: record["checksum"] for path, record in records}
    summary.files_changed = sorted(p for p in now if p in before and before[p] != now[p])
    summary.files_removed = sorted(set(before) - set(now))
    return summary


def _collect(results, summary: PreprocessSummary, bar) -> list[tuple[str, dict]]:
    """Count the (path, result) pairs into `summary`; returns the (path, record) pairs."""
    records = []
    for path, result in results:
        record = result["record"]
        if result["status"] == "done":
            summary.files_already_done += 1
        elif record["accepted"]:
            summary.files_accepted += 1
        else:
            summary.files_rejected += 1
        if result["status"] == "new":
            summary.chains_accepted += len(record["accepted"])
            summary.rejections_by_reason.update(row["reason"] for row in record["rejected"])
        records.append((path, record))
        bar.update(1)
    return records


def _field_help() -> dict[str, str]:
    """Each PreprocessConfig field's description, read from the 'Args:' section of its docstring."""
    help_text, name = {}, None
    for line in PreprocessConfig.__doc__.split("Args:")[1].splitlines():
        head, _, rest = line.strip().partition(": ")
        if head.isidentifier() and rest:
            name, help_text[head] = head, rest
        elif name and line.strip():
            help_text[name] += " " + line.strip()
    return help_text


def build_parser() -> argparse.ArgumentParser:
    defaults = PreprocessConfig()
    field_help = _field_help()
    parser = argparse.ArgumentParser(
        prog="flashipa-preprocess",
        description="Turn PDB/mmCIF/BinaryCIF files (optionally .gz) into per-chain backbone examples "
        "for training. Resumable: rerun with the same --out to continue.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="structure files, folders (recursive) or globs")
    parser.add_argument("--out", required=True, help="output directory (created; resumed when it exists)")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    for f in fields(PreprocessConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = f"{field_help[f.name]} (default {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif f.name == "altloc":
            parser.add_argument(flag, choices=("occupancy", "first"), default=default, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = PreprocessConfig.from_dict({f.name: getattr(args, f.name) for f in fields(PreprocessConfig)})
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ValueError(f"--out {args.out} is a file; pass a folder (created when missing).")
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: give a number of processes >= 1.")
        summary = preprocess(args.inputs, args.out, config, workers=args.workers, progress=not args.no_progress)
    except (FileNotFoundError, PreprocessedDirError, ValueError) as error:
        print(f"flashipa-preprocess: error: {error}", file=sys.stderr)
        return 2
    print(summary.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
