"""Backbones from disk, lazily: a preprocessed directory (flashipa-preprocess output) or structure files."""

from __future__ import annotations

import os
from collections.abc import Iterator

from flashipa_train.metrics.backbone_input import Backbone, as_backbone


def iter_preprocessed_backbones(directory: str, max_examples: int | None = None) -> Iterator[Backbone]:
    """Backbones of the examples listed in DIR/metadata.csv, named "<entry>_<chain>[_<segment>]"."""
    from flashipa_train.data.example_store import load_example, read_metadata

    for row in read_metadata(directory)[:max_examples]:
        example = load_example(os.path.join(directory, row["example"]))
        name = f"{row['entry']}_{row['chain']}" + (f"_{row['segment']}" if row["segment"] not in ("", "0") else "")
        yield as_backbone(example, name=name)


def iter_structure_file_backbones(paths: list[str], max_chains: int | None = None) -> Iterator[Backbone]:
    """One backbone per protein chain of model 1 of each structure file (PDB, mmCIF, BinaryCIF, gzipped
    or not), named "<file stem>_<chain>", or "<file stem>" for a one-chain file. Residue numbering gaps
    become chain breaks."""
    from flashipa_train.data.chain_features import chain_backbone, protein_chain_atoms
    from flashipa_train.data.structure_reader import parse_structure

    count = 0
    for path in paths:
        with open(path, "rb") as f:
            parsed = parse_structure(path, f.read())
        chains = protein_chain_atoms(parsed.atoms)
        for chain_id, atoms in chains:
            if max_chains is not None and count >= max_chains:
                return
            chain = chain_backbone(chain_id, atoms)
            yield as_backbone(
                chain.atoms,
                mask=chain.atom_mask,
                chain_ids=chain_id,
                residue_index=chain.residue_index,
                name=file_stem(path) if len(chains) == 1 else f"{file_stem(path)}_{chain_id}",
            )
            count += 1


def file_stem(path: str) -> str:
    """'sample_0_len100' for '/x/sample_0_len100.pdb' or '/x/sample_0_len100.cif.gz'."""
    name = os.path.basename(path)
    name = name[:-3] if name.lower().endswith(".gz") else name
    return os.path.splitext(name)[0]


def structure_files_in(directory: str) -> list[str]:
    """Sorted structure files (by suffix, optionally .gz) directly inside `directory`."""
    from flashipa_train.data.structure_reader import is_structure_file_name

    if not os.path.isdir(directory):
        raise FileNotFoundError(f"structure folder {directory!r} does not exist")
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if is_structure_file_name(n))


def iter_backbones(source, max_count: int | None = None) -> Iterator[Backbone]:
    """Backbones from a preprocessed directory (has format.json), a folder of structure files, one
    structure file, or an iterable of backbones (arrays, dicts or `Backbone`s)."""
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if os.path.isfile(os.path.join(source, "format.json")):
            yield from iter_preprocessed_backbones(source, max_count)
            return
        paths = structure_files_in(source) if os.path.isdir(source) else [source]
        if not paths:
            raise FileNotFoundError(
                f"{source!r} holds neither a preprocessed dataset (format.json) nor structure files "
                "(.pdb/.cif/.bcif, optionally .gz)"
            )
        yield from iter_structure_file_backbones(paths, max_count)
        return
    for count, backbone in enumerate(source):
        if max_count is not None and count >= max_count:
            return
        yield as_backbone(backbone)
