"""Deterministic train/validation split in which no entry (and optionally no sequence) straddles the split."""

import hashlib
import math


def split_rows_by_entry(
    rows: list[dict], val_fraction: float, seed: int = 0, group_identical_sequences: bool = True
) -> tuple[list[dict], list[dict]]:
    """Split metadata rows into (train, val).

    Rows sharing an `entry` form one group; with `group_identical_sequences`, groups whose rows share
    a `sequence` are merged as well (so a protein solved twice cannot leak into validation). Groups are
    ordered by a hash of (seed, group name) and the first round(val_fraction * groups) go to
    validation (at least one when val_fraction > 0 and there are two or more groups). The result
    depends only on the rows' entries/sequences and the seed, not on row order.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    parent = {}

    def find(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(a, b):
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    for row in rows:
        parent.setdefault(("entry", row["entry"]), ("entry", row["entry"]))
        if group_identical_sequences:
            parent.setdefault(("sequence", row["sequence"]), ("sequence", row["sequence"]))
            union(("entry", row["entry"]), ("sequence", row["sequence"]))

    group_of_entry = {row["entry"]: find(("entry", row["entry"])) for row in rows}
    # Name each group by its smallest entry id, so the name does not depend on sequences.
    group_name = {}
    for entry, group in group_of_entry.items():
        group_name[group] = min(group_name.get(group, entry), entry)
    names = sorted(set(group_name.values()), key=lambda name: hashlib.sha1(f"{seed}:{name}".encode()).hexdigest())
    num_val = 0
    if val_fraction > 0 and len(names) >= 2:
        num_val = min(len(names) - 1, max(1, math.floor(val_fraction * len(names) + 0.5)))
    val_names = set(names[:num_val])
    train, val = [], []
    for row in rows:
        (val if group_name[group_of_entry[row["entry"]]] in val_names else train).append(row)
    return train, val
