"""`flashipa-preprocess INPUT... --out DIR`: structure files to training examples, resumably and in parallel.

Every input file ends up either with accepted examples in DIR/metadata.csv or with rows in
DIR/rejected.csv saying why. A killed run restarted with the same DIR skips the files whose checksum
already has a record, so no row is lost or duplicated.
"""

import argparse
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
            f"directory now holds {self.total_examples} examples and {self.total_rejected_rows} rejected rows"
        )


def find_structure_files(inputs: list[str]) -> list[str]:
    """Files named by `inputs`: files as given, folders searched recursively, globs expanded.

    Inside folders only structure names (.pdb .ent .cif .mmcif .bcif, optionally .gz) are taken.
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
                    for name in sorted(files):
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
            k: (found.get("config", {}).get(k), v) for k, v in config.to_dict().items() if found.get("config", {}).get(k) != v
        }
        raise PreprocessedDirError(
            f"{out_dir} was preprocessed with other settings (key: (stored, requested)) {differing}. "
            f"Use the same settings to resume, or a fresh --out directory."
        )


def write_tables(out_dir: str) -> tuple[int, int]:
    """Rebuild DIR/metadata.csv and DIR/rejected.csv from all records; returns their row counts."""
    accepted, rejected = [], []
    records_dir = os.path.join(out_dir, RECORDS_DIR)
    for name in sorted(os.listdir(records_dir)):
        if not name.endswith(".json") or name.startswith("."):
            continue
        with open(os.path.join(records_dir, name)) as f:
            record = json.load(f)
        accepted.extend(record["accepted"])
        rejected.extend(record["rejected"])
    accepted.sort(key=lambda row: (row["source"], row["chain"], int(row["segment"])))
    rejected.sort(key=lambda row: (row["source"], row["chain"]))
    atomic_write_csv(os.path.join(out_dir, METADATA_FILE), METADATA_COLUMNS, accepted)
    atomic_write_csv(os.path.join(out_dir, REJECTED_FILE), REJECTED_COLUMNS, rejected)
    return len(accepted), len(rejected)


def preprocess(
    inputs: list[str], out_dir: str, config: PreprocessConfig = PreprocessConfig(), workers: int = 1, progress: bool = True
) -> PreprocessSummary:
    """Preprocess `inputs` (files, folders, globs) into `out_dir`; resumable; returns the run's summary."""
    paths = find_structure_files(inputs)
    prepare_output_dir(out_dir, config)
    summary = PreprocessSummary(files_in=len(paths))
    start = time.perf_counter()
    load_residue_dictionaries()
    work = partial(process_structure_file, config=config, out_dir=out_dir)
    bar = tqdm(total=len(paths), unit="file", desc="preprocess", disable=not progress, file=sys.stderr)
    if workers <= 1:
        results = map(work, paths)
        _collect(results, summary, bar)
    else:
        # fork keeps start-up cheap; the parent holds no threads or GPU state at this point.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            _collect(pool.imap_unordered(work, paths, chunksize=1), summary, bar)
    bar.close()
    summary.seconds = time.perf_counter() - start
    summary.total_examples, summary.total_rejected_rows = write_tables(out_dir)
    return summary


def _collect(results, summary: PreprocessSummary, bar) -> None:
    for result in results:
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
        bar.update(1)


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
    config = PreprocessConfig.from_dict({f.name: getattr(args, f.name) for f in fields(PreprocessConfig)})
    try:
        summary = preprocess(args.inputs, args.out, config, workers=args.workers, progress=not args.no_progress)
    except (FileNotFoundError, PreprocessedDirError) as error:
        print(f"flashipa-preprocess: error: {error}", file=sys.stderr)
        return 2
    print(summary.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
