"""DataModule: entry-grouped split, token-budget batches, crops, centring, workers, clear errors."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from flashipa_train.data.backbone_dataset import BackboneDataset
from flashipa_train.data.datamodule import BackboneDataModule
from flashipa_train.data.example_store import FORMAT_FILE, METADATA_COLUMNS, PreprocessedDirError, read_metadata
from flashipa_train.data.split import split_rows_by_entry
from flashipa_train.data.token_budget_sampler import TokenBudgetBatchSampler

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    from flashipa_train.data.preprocess import preprocess

    out = tmp_path_factory.mktemp("cache")
    preprocess([str(DATA_DIR)], str(out), progress=False)
    return out


def synthetic_rows(num_entries: int, chains_per_entry: int = 3) -> list[dict]:
    """Chain A of entries 2k and 2k+1 share a sequence (the same protein solved twice)."""
    return [
        {"entry": f"e{e:03d}", "chain": chr(65 + c), "sequence": f"S{e // 2}" if c == 0 else f"S{e}-{c}"}
        for e in range(num_entries)
        for c in range(chains_per_entry)
    ]


def test_split_is_deterministic_and_independent_of_row_order():
    rows = synthetic_rows(50)
    train, val = split_rows_by_entry(rows, 0.2, seed=3)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    train2, val2 = split_rows_by_entry(shuffled, 0.2, seed=3)
    key = lambda r: (r["entry"], r["chain"])  # noqa: E731
    assert sorted(map(key, val)) == sorted(map(key, val2)) and len(train) == len(train2)
    assert sorted(map(key, split_rows_by_entry(rows, 0.2, seed=4)[1])) != sorted(map(key, val))


@pytest.mark.parametrize("group_sequences", [False, True])
def test_no_entry_or_grouped_sequence_straddles_the_split(group_sequences):
    rows = synthetic_rows(60)
    train, val = split_rows_by_entry(rows, 0.25, seed=0, group_identical_sequences=group_sequences)
    assert len(train) + len(val) == len(rows) and val and train
    assert not {r["entry"] for r in train} & {r["entry"] for r in val}
    shared_sequences = {r["sequence"] for r in train} & {r["sequence"] for r in val}
    assert not shared_sequences if group_sequences else shared_sequences


def test_token_budget_batches_never_exceed_the_budget_and_cover_every_example_once():
    lengths = np.random.default_rng(0).integers(20, 600, size=300)
    sampler = TokenBudgetBatchSampler(
        lengths, max_tokens=2000, crop_length=384, shuffle=True, random_crop=True, max_batch_size=12
    )
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            crops = [length for _, _, length in batch]
            assert len(batch) * max(crops) <= 2000 and len(batch) <= 12
        indices = sorted(index for batch in batches for index, _, _ in batch)
        assert indices == list(range(300))
        epochs.append(batches)
    assert epochs[0] != epochs[1]
    assert len(epochs[0]) == len(epochs[1]) == len(epochs[2])  # Lightning counts batches once
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # reproducible from (seed, epoch)


def test_batches_are_length_sorted_with_little_padding():
    lengths = np.random.default_rng(1).integers(40, 512, size=400)
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=4096, crop_length=512, shuffle=True, random_crop=True)
    padding = [1 - sum(c for _, _, c in b) / (len(b) * max(c for _, _, c in b)) for b in sampler]
    assert np.mean(padding) < 0.1


def test_ranks_get_disjoint_batches_of_equal_count():
    lengths = np.random.default_rng(2).integers(40, 300, size=101)
    per_rank = [
        list(TokenBudgetBatchSampler(lengths, 1000, 256, shuffle=True, random_crop=True, num_replicas=3, rank=r))
        for r in range(3)
    ]
    assert len({len(b) for b in per_rank}) == 1
    seen = [index for batches in per_rank for batch in batches for index, _, _ in batch]
    assert len(seen) == len(set(seen))


def test_crop_windows_lie_inside_the_chain_and_eval_crops_are_centred():
    lengths = np.array([100, 500, 300])
    train = TokenBudgetBatchSampler(lengths, 512, 256, shuffle=True, random_crop=True)
    keys = {index: (start, crop) for batch in train for index, start, crop in batch}
    assert keys[0] == (0, 100)
    for index in (1, 2):
        start, crop = keys[index]
        assert crop == 256 and 0 <= start <= lengths[index] - 256
    val = TokenBudgetBatchSampler(lengths, 512, 256, shuffle=False, random_crop=False)
    keys = {index: (start, crop) for batch in val for index, start, crop in batch}
    assert keys[1] == ((500 - 256) // 2, 256)


def test_dataset_crop_matches_the_stored_example_and_is_centred(cache_dir):
    rows = read_metadata(str(cache_dir))
    dataset = BackboneDataset(str(cache_dir), rows)
    index = int(np.argmax(dataset.lengths))
    whole = dataset[index]
    crop = dataset[(index, 30, 100)]
    assert crop["atoms"].shape == (100, 4, 3)
    # the sampler's convention: contiguous residue index from 0 (numbering gaps are not trained on)
    assert crop["residue_index"].tolist() == list(range(100))
    for item in (whole, crop):
        ca = item["atoms"][item["atom_mask"][:, 1], 1]
        assert ca.mean(dim=0).abs().max() < 1e-4
    # Same internal geometry as the uncropped example, translated.
    offset = whole["atoms"][30:130] - crop["atoms"]
    mask = crop["atom_mask"]
    assert (offset[mask] - offset[mask][0]).abs().max() < 1e-4
    torch.testing.assert_close(crop["aatype"], whole["aatype"][30:130])


def test_batches_have_the_documented_keys_shapes_and_dtypes(cache_dir):
    module = BackboneDataModule(data_dir=str(cache_dir), crop_length=128, max_tokens_per_batch=512, num_workers=0)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    b, length = batch["res_mask"].shape
    expected = {
        "atoms": ((b, length, 4, 3), torch.float32),
        "atom_mask": ((b, length, 4), torch.bool),
        "res_mask": ((b, length), torch.bool),
        "seq_mask": ((b, length), torch.bool),
        "aatype": ((b, length), torch.int64),
        "residue_index": ((b, length), torch.int64),
        "chain_index": ((b, length), torch.int64),
        "b_factors": ((b, length, 4), torch.float32),
        "lengths": ((b,), torch.int64),
    }
    assert {k: (tuple(batch[k].shape), batch[k].dtype) for k in expected} == expected
    assert len(batch["source"]) == b and all("chain" in s for s in batch["source"])
    assert b * length <= 512 and int(batch["lengths"].max()) == length
    assert not batch["res_mask"][~batch["seq_mask"]].any()
    assert torch.equal(batch["seq_mask"].sum(1), batch["lengths"])


def test_loader_with_worker_processes_gives_the_same_batches_as_without(cache_dir):
    def sources(num_workers):
        module = BackboneDataModule(
            data_dir=str(cache_dir), crop_length=128, max_tokens_per_batch=1024, num_workers=num_workers
        )
        module.setup()
        loader = module.train_dataloader()
        loader.batch_sampler.set_epoch(2)
        return [(tuple(b["source"]), b["atoms"].sum().item()) for b in loader]

    in_process = sources(0)
    with_workers = sources(2)
    assert [s for s, _ in in_process] == [s for s, _ in with_workers]
    np.testing.assert_allclose([a for _, a in in_process], [a for _, a in with_workers], rtol=1e-6)


def test_pdb_dir_is_preprocessed_once_into_the_cache_and_reused(tmp_path):
    pdb_dir = tmp_path / "pdbs"
    pdb_dir.mkdir()
    for name in ("1qys.pdb.gz", "5ugo.cif.gz", "5eil.pdb.gz", "4zey.cif.gz", "4gxy.pdb.gz"):
        (pdb_dir / name).write_bytes((DATA_DIR / name).read_bytes())
    module = BackboneDataModule(
        pdb_dir=str(pdb_dir), cache_dir=str(tmp_path / "cache"), crop_length=64, max_tokens_per_batch=256
    )
    module.prepare_data()
    module.setup()
    assert len(module.train_dataset) + len(module.val_dataset) == 6  # 1qys, 5ugo, 5eil x3, 4zey
    records = sorted((Path(module.data_dir) / "records").iterdir())
    stamps = [p.stat().st_mtime_ns for p in records]
    again = BackboneDataModule(
        pdb_dir=str(pdb_dir), cache_dir=str(tmp_path / "cache"), crop_length=64, max_tokens_per_batch=256
    )
    again.prepare_data()
    again.setup()
    assert again.data_dir == module.data_dir
    assert [p.stat().st_mtime_ns for p in sorted((Path(again.data_dir) / "records").iterdir())] == stamps


def test_missing_empty_or_incompatible_directories_raise_clear_errors(tmp_path, cache_dir):
    with pytest.raises(PreprocessedDirError, match="does not exist"):
        BackboneDataModule(data_dir=str(tmp_path / "missing")).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreprocessedDirError, match="not a directory written by flashipa-preprocess"):
        BackboneDataModule(data_dir=str(tmp_path / "empty")).setup()
    old = tmp_path / "old"
    old.mkdir()
    (old / FORMAT_FILE).write_text(json.dumps({"format_version": 0}))
    with pytest.raises(PreprocessedDirError, match="format_version=0"):
        BackboneDataModule(data_dir=str(old)).setup()
    (old / FORMAT_FILE).write_text((cache_dir / FORMAT_FILE).read_text())
    (old / "metadata.csv").write_text(",".join(METADATA_COLUMNS) + "\n")
    with pytest.raises(PreprocessedDirError, match="no accepted examples"):
        BackboneDataModule(data_dir=str(old)).setup()
    with pytest.raises(FileNotFoundError, match="run from the repository root or pass data.pdb_dir="):
        BackboneDataModule(pdb_dir=str(tmp_path / "no_structures_here"), cache_dir=str(tmp_path)).prepare_data()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="exactly one of"):
        BackboneDataModule()
    with pytest.raises(ValueError, match="crop_length"):
        BackboneDataModule(data_dir="x", crop_length=512, max_tokens_per_batch=256)
    with pytest.raises(ValueError, match="unknown preprocess settings"):
        BackboneDataModule(pdb_dir="x", preprocess={"min_lenght": 3})


class RecordingModule:
    """A minimal LightningModule that records which examples each training epoch saw."""

    @staticmethod
    def build():
        import pytorch_lightning as pl

        class Recorder(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.weight = torch.nn.Parameter(torch.zeros(()))
                self.seen = {}

            def training_step(self, batch, batch_idx):
                self.seen.setdefault(self.current_epoch, []).append(tuple(batch["source"]))
                return (self.weight * batch["atoms"].mean()) ** 2

            def validation_step(self, batch, batch_idx):
                pass

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.0)

        return Recorder()


def test_lightning_trainer_reshuffles_every_epoch(cache_dir):
    import pytorch_lightning as pl

    module = BackboneDataModule(data_dir=str(cache_dir), crop_length=128, max_tokens_per_batch=512, num_workers=0)
    model = RecordingModule.build()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=module)
    assert set(model.seen) == {0, 1}
    assert model.seen[0] != model.seen[1]
    for epoch in (0, 1):
        assert sorted(s.split(" residues")[0] for b in model.seen[epoch] for s in b) == sorted(
            f"{r['source']} chain {r['chain']} seg {r['segment']}" for r in module.train_dataset.rows
        )
