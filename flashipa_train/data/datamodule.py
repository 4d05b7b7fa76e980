"""LightningDataModule over a preprocessed directory (or a folder of structures preprocessed on first use)."""

import hashlib
import json
import logging
import os

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from flashipa_train.data.backbone_dataset import BackboneDataset
from flashipa_train.data.collate import pad_backbone_batch
from flashipa_train.data.example_store import FORMAT_VERSION, METADATA_FILE, PreprocessedDirError, read_metadata
from flashipa_train.data.preprocess_config import PreprocessConfig
from flashipa_train.data.resumable_loader import ResumableBatchLoader
from flashipa_train.data.split import split_rows_by_entry
from flashipa_train.data.token_budget_sampler import TokenBudgetBatchSampler

log = logging.getLogger(__name__)


class BackboneDataModule(pl.LightningDataModule):
    """Train/val loaders of padded backbone batches built under a token budget.

    Give exactly one of `data_dir` (written by `flashipa-preprocess`) or `pdb_dir` (a folder of
    structure files; preprocessed into a subfolder of `cache_dir` on first use, resumed and reused
    afterwards; needs biotite unless that cache is already complete).

    Args:
        data_dir: preprocessed directory.
        pdb_dir: folder (searched recursively) of .pdb/.ent/.cif/.bcif files, optionally .gz.
        cache_dir: parent of the preprocessed caches of `pdb_dir` (one subfolder per folder and settings).
        preprocess: filter settings for `pdb_dir` (PreprocessConfig fields; defaults when None).
        preprocess_workers: processes used to preprocess `pdb_dir`.
        val_fraction: fraction of entry groups held out for validation.
        split_seed: seed of the train/val split.
        group_identical_sequences: also keep chains with identical sequences on one side of the split.
        crop_length: longest window of a chain in a batch (random window in training, centred in val).
        max_tokens_per_batch: budget on batch_size * longest length of a padded batch.
        max_batch_size: optional cap on examples per batch.
        num_workers: DataLoader worker processes.
        pin_memory: DataLoader pin_memory (only applied when CUDA is available).
        seed: seed of the per-epoch shuffles and crops.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        pdb_dir: str | None = None,
        cache_dir: str = "cache/structures",
        preprocess: dict | PreprocessConfig | None = None,
        preprocess_workers: int = 1,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        group_identical_sequences: bool = True,
        crop_length: int = 256,
        max_tokens_per_batch: int = 4096,
        max_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        if (data_dir is None) == (pdb_dir is None):
            raise ValueError(
                f"BackboneDataModule needs exactly one of data_dir (preprocessed) or pdb_dir (structure files); "
                f"got data_dir={data_dir!r}, pdb_dir={pdb_dir!r}"
            )
        if not isinstance(crop_length, int) or crop_length < 1:
            raise ValueError(f"data.crop_length={crop_length}: give a whole number of residues >= 1 (e.g. 256).")
        if max_batch_size is not None and (not isinstance(max_batch_size, int) or max_batch_size < 1):
            raise ValueError(f"data.max_batch_size={max_batch_size}: give a whole number >= 1, or null for no cap.")
        if max_tokens_per_batch < crop_length:
            raise ValueError(
                f"max_tokens_per_batch={max_tokens_per_batch} < crop_length={crop_length}: one cropped chain "
                f"would not fit in a batch"
            )
        if isinstance(preprocess, PreprocessConfig):
            self.preprocess_config = preprocess
        else:
            self.preprocess_config = PreprocessConfig.from_dict(dict(preprocess or {}))
        self.pdb_dir = pdb_dir
        self.preprocess_workers = preprocess_workers
        self.data_dir = data_dir if data_dir is not None else self._cache_dir_for(pdb_dir, cache_dir)
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.group_identical_sequences = group_identical_sequences
        self.crop_length = crop_length
        self.max_tokens_per_batch = max_tokens_per_batch
        self.max_batch_size = max_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.train_dataset: BackboneDataset | None = None
        self.val_dataset: BackboneDataset | None = None

    def _cache_dir_for(self, pdb_dir: str, cache_dir: str) -> str:
        """cache_dir/<folder name>-<hash of folder path, settings and format version>."""
        key = json.dumps([os.path.abspath(pdb_dir), self.preprocess_config.to_dict(), FORMAT_VERSION], sort_keys=True)
        name = os.path.basename(os.path.normpath(os.path.abspath(pdb_dir))) or "structures"
        return os.path.join(cache_dir, f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:10]}")

    def prepare_data(self) -> None:
        """Preprocess `pdb_dir` into the cache (resuming; files already done are skipped by checksum)."""
        if self.pdb_dir is None:
            return
        if not os.path.isdir(self.pdb_dir):
            raise FileNotFoundError(
                f"data.pdb_dir={self.pdb_dir!r} is not a folder (looked for {os.path.abspath(self.pdb_dir)}): "
                "relative paths start from the current folder, so run from the repository root or pass "
                "data.pdb_dir=/path/to/your/structures"
            )
        try:
            from flashipa_train.data.preprocess import preprocess  # imports biotite
        except ImportError as error:
            if os.path.exists(os.path.join(self.data_dir, METADATA_FILE)):
                log.info("biotite unavailable (%s); using the existing cache %s as is", error, self.data_dir)
                return
            raise ImportError(
                f"preprocessing pdb_dir={self.pdb_dir!r} needs biotite ({error}); install it, or preprocess "
                f"elsewhere with flashipa-preprocess and pass data_dir=..."
            ) from error
        summary = preprocess(
            [self.pdb_dir], self.data_dir, self.preprocess_config, workers=self.preprocess_workers, progress=False
        )
        log.info("preprocessed %s into %s:\n%s", self.pdb_dir, self.data_dir, summary.report())

    def setup(self, stage: str | None = None) -> None:
        """Read metadata and split it; preprocesses first when used outside a Trainer with pdb_dir."""
        if self.train_dataset is not None:
            return
        if self.pdb_dir is not None and not os.path.exists(os.path.join(self.data_dir, METADATA_FILE)):
            self.prepare_data()
        rows = read_metadata(self.data_dir)
        train_rows, val_rows = split_rows_by_entry(
            rows, self.val_fraction, self.split_seed, self.group_identical_sequences
        )
        if not val_rows and self.val_fraction > 0:
            raise PreprocessedDirError(
                f"data: the {len(rows)} accepted chains in {self.data_dir} come from a single entry (or one "
                "sequence), so none can be held out for validation: no val/loss and no best checkpoint. Add "
                "structures of at least one other entry, or set data.val_fraction=0 to train without validation."
            )
        self.train_dataset = BackboneDataset(self.data_dir, train_rows)
        self.val_dataset = BackboneDataset(self.data_dir, val_rows)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, training=False)

    def _loader(self, dataset: BackboneDataset, training: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call BackboneDataModule.setup() before asking for a dataloader")
        trainer = getattr(self, "trainer", None)
        num_replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        sampler = TokenBudgetBatchSampler(
            dataset.lengths,
            max_tokens=self.max_tokens_per_batch,
            crop_length=self.crop_length,
            shuffle=training,
            random_crop=training,
            seed=self.seed,
            max_batch_size=self.max_batch_size,
            num_replicas=num_replicas,
            rank=rank,
        )
        # the training loader's position in its epoch goes into checkpoints, for exact mid-epoch resumes
        loader_class = ResumableBatchLoader if training else DataLoader
        return loader_class(
            dataset,
            batch_sampler=sampler,
            collate_fn=pad_backbone_batch,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )
