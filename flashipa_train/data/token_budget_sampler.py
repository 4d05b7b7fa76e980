"""Length-sorted batches under a token budget, with crop windows drawn per epoch."""

import numpy as np
from torch.utils.data import Sampler


class EpochIndexSampler(Sampler[int]):
    """Example indices in a seeded per-epoch random order (or in order when shuffle=False).

    Lightning calls `set_epoch` on `batch_sampler.sampler` at the start of every epoch, which is how
    `TokenBudgetBatchSampler` learns the epoch.
    """

    def __init__(self, size: int, shuffle: bool, seed: int):
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, self.epoch, 0]).permutation(self.size)

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.size


class TokenBudgetBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Batches of (index, crop_start, crop_length) keys whose padded size fits a token budget.

    Each example contributes min(length, crop_length) residues. Examples are sorted by that length,
    ties broken by the epoch's shuffle, and packed greedily so that batch_size * longest_in_batch
    <= max_tokens (hence also the sum of lengths <= max_tokens); the batch order is then shuffled.
    Sorting by exact length keeps padding minimal and makes the batch count the same every epoch
    (Lightning counts batches once); which examples share a batch changes among equal lengths.
    Crop windows are uniform random (train) or centred (eval). All of it is a pure function of
    (seed, epoch), identical on every rank; rank r takes batches r, r+R, ... (truncated so every
    rank gets the same number).

    Args:
        lengths: [N] residues per example.
        max_tokens: token budget of one padded batch; must be >= crop_length.
        crop_length: longest window taken from an example.
        shuffle: shuffle examples and batches every epoch (training) or keep a fixed order (eval).
        random_crop: random crop windows (training) or centred windows (eval).
        seed: base seed; the epoch comes from `set_epoch` on `self.sampler`.
        max_batch_size: optional cap on examples per batch.
        num_replicas: number of data-parallel ranks.
        rank: this rank.
    """

    def __init__(
        self,
        lengths,
        max_tokens: int,
        crop_length: int,
        shuffle: bool,
        random_crop: bool,
        seed: int = 0,
        max_batch_size: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if max_tokens < crop_length:
            raise ValueError(
                f"max_tokens={max_tokens} < crop_length={crop_length}: a single cropped example would not fit; "
                f"raise max_tokens_per_batch or lower crop_length"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank} must be in [0, num_replicas={num_replicas})")
        self.lengths = np.asarray(lengths, dtype=np.int64)  # [N]
        self.max_tokens = max_tokens
        self.crop_length = crop_length
        self.random_crop = random_crop
        self.max_batch_size = max_batch_size
        self.num_replicas = num_replicas
        self.rank = rank
        self.sampler = EpochIndexSampler(len(self.lengths), shuffle, seed)
        self._cached_epoch, self._cached_batches = None, None
        self.first_batch = 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def set_first_batch(self, first_batch: int) -> None:
        """Makes iterations start at this batch of the epoch (0: its start) until set again (resuming mid-epoch)."""
        if first_batch < 0:
            raise ValueError(f"set_first_batch: first_batch={first_batch} must be >= 0")
        self.first_batch = first_batch

    def all_batches(self) -> list[list[tuple[int, int, int]]]:
        """Every rank's batches for the current epoch (cached per epoch)."""
        if self._cached_epoch != self.sampler.epoch:
            self._cached_batches = self._build_batches()
            self._cached_epoch = self.sampler.epoch
        return self._cached_batches

    def _build_batches(self) -> list[list[tuple[int, int, int]]]:
        rng = np.random.default_rng([self.sampler.seed, self.sampler.epoch, 1])
        crop = np.minimum(self.lengths, self.crop_length)  # [N]
        order = self.sampler.order()
        order = order[np.argsort(crop[order], kind="stable")]
        batches, batch, longest = [], [], 0
        for index in order.tolist():
            longest_if_added = max(longest, int(crop[index]))
            full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
            if batch and (full or (len(batch) + 1) * longest_if_added > self.max_tokens):
                batches.append(batch)
                batch, longest_if_added = [], int(crop[index])
            batch.append(index)
            longest = longest_if_added
        if batch:
            batches.append(batch)
        if self.sampler.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return [[self._key(index, rng) for index in batch] for batch in batches]

    def _key(self, index: int, rng: np.random.Generator) -> tuple[int, int, int]:
        length, crop = int(self.lengths[index]), min(int(self.lengths[index]), self.crop_length)
        slack = length - crop
        start = int(rng.integers(0, slack + 1)) if self.random_crop else slack // 2
        return index, start, crop

    def __iter__(self):
        return iter(self._rank_batches()[self.first_batch :])

    def __len__(self) -> int:
        return len(self._rank_batches())

    def _rank_batches(self) -> list[list[tuple[int, int, int]]]:
        batches = self.all_batches()
        usable = len(batches) - len(batches) % self.num_replicas
        return batches[self.rank : usable : self.num_replicas]
