"""Read an offline wandb run back without an account: its `run-*.wandb` file is a log of protobuf records
(wandb's datastore: a 7-byte header, then 32 KiB blocks of checksum/length/type-framed chunks)."""

import json
import struct
import time
from pathlib import Path

BLOCK_SIZE = 32768
CHUNK_HEADER = struct.Struct("<IHB")  # checksum, length, chunk type (1 full, 2 first, 3 middle, 4 last)
FILE_HEADER = struct.Struct("<4sHB")  # b":W&B", magic, version


def records(run_dir: Path):
    """Every `wandb_internal_pb2.Record` of the offline run folder `run_dir`, in order."""
    from wandb.proto import wandb_internal_pb2

    (path,) = Path(run_dir).glob("run-*.wandb")
    data = path.read_bytes()
    assert FILE_HEADER.unpack_from(data)[0] == b":W&B", f"{path} is not a wandb datastore file"
    position, chunks = FILE_HEADER.size, []
    while position + CHUNK_HEADER.size <= len(data):
        left_in_block = BLOCK_SIZE - position % BLOCK_SIZE
        _, length, kind = CHUNK_HEADER.unpack_from(data, position) if left_in_block >= CHUNK_HEADER.size else (0, 0, 0)
        if kind == 0:  # block padding
            position += left_in_block
            continue
        start = position + CHUNK_HEADER.size
        chunks.append(data[start : start + length])
        position = start + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def _key(item) -> tuple:
    return tuple(item.nested_key) if item.nested_key else (item.key,)


def finished_records(run_dir: Path, timeout_s: float = 60.0) -> list:
    """The records of a finished run, once its log ends with the `exit` record: wandb-core writes the log
    in the background, and a read right after `wandb.finish()` returns can find it still short."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = list(records(run_dir))
        if found and found[-1].WhichOneof("record_type") == "exit":
            return found
        if time.monotonic() > deadline:
            kinds = [record.WhichOneof("record_type") for record in found]
            raise AssertionError(f"{run_dir}: no exit record after {timeout_s} s; records so far: {kinds}")
        time.sleep(0.2)


def run_info(run_dir: Path) -> dict:
    """{"group", "name", "config": {top-level key: value}, "summary": {"a/b": value}} of a finished offline run."""
    info = {"config": {}, "summary": {}}
    for record in finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(group=record.run.run_group, name=record.run.display_name)
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "summary":
            for item in record.summary.update:
                info["summary"]["/".join(_key(item))] = json.loads(item.value_json)
            continue
        else:
            continue
        for item in updates:
            key = _key(item)
            if len(key) == 1:
                info["config"][key[0]] = json.loads(item.value_json)
    return info


def table_rows(run_dir: Path, key: str) -> list[dict]:
    """Rows (dicts) of the wandb.Table logged under `key` (the last one logged)."""
    (path,) = sorted((Path(run_dir) / "files" / "media" / "table").glob(f"{key}_*.table.json"))[-1:]
    table = json.loads(path.read_text())
    return [dict(zip(table["columns"], row)) for row in table["data"]]
