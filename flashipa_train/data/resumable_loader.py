"""A training DataLoader whose position inside an epoch survives a checkpoint."""

from collections.abc import Iterator

from torch.utils.data import DataLoader

from flashipa_train.data.token_budget_sampler import TokenBudgetBatchSampler


class ResumableBatchLoader(DataLoader):
    """DataLoader over a `TokenBudgetBatchSampler` that Lightning can checkpoint mid-epoch.

    Lightning stores `state_dict()` of a training loader that has one in the checkpoint's loop state and
    calls `load_state_dict()` on resume before it first iterates the loader. The state is the epoch of the
    iteration in progress and how many batches it has handed out; the sampler's batches are a pure function
    of (seed, epoch), so resuming re-pins that epoch and has the sampler drop the batches already trained
    on, without loading them. The sampler runs in the main process, so this holds with worker processes.

    The count is of batches handed to the caller, so it matches the batches trained on as long as the
    caller does not prefetch; Lightning prefetches none from a loader of known length, which this is.
    """

    def __init__(self, dataset, batch_sampler: TokenBudgetBatchSampler, **kwargs):
        if not isinstance(batch_sampler, TokenBudgetBatchSampler):
            raise TypeError(
                f"ResumableBatchLoader needs a TokenBudgetBatchSampler as batch_sampler, got "
                f"{type(batch_sampler).__name__}"
            )
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._epoch = batch_sampler.sampler.epoch
        self._batches_served = 0
        self._batches_to_skip = 0

    def __iter__(self) -> Iterator:
        # The underlying iterator is created here (as DataLoader does), fixing the epoch's batches; a worker
        # iterator iterates the batch sampler twice while it starts, hence the start is reset only afterwards.
        self._epoch = self.batch_sampler.sampler.epoch
        self._batches_served = self._batches_to_skip
        self.batch_sampler.set_first_batch(self._batches_to_skip)
        try:
            batches = super().__iter__()
        finally:
            self.batch_sampler.set_first_batch(0)
        self._batches_to_skip = 0
        return self._counted(batches)

    def _counted(self, batches: Iterator) -> Iterator:
        for batch in batches:
            self._batches_served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches_served": self._batches_served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Makes the next iteration continue `state`'s epoch after the batches it had served."""
        missing = {"epoch", "batches_served"} - set(state)
        if missing:
            raise KeyError(
                f"ResumableBatchLoader.load_state_dict: the checkpoint's train loader state {state!r} lacks "
                f"{sorted(missing)}; resume from a checkpoint written by this loader"
            )
        self.batch_sampler.set_epoch(int(state["epoch"]))
        self._batches_to_skip = int(state["batches_served"])
