"""ATen operations of one training step, by part of the model: what the host dispatches (views included) and,
minus views, about what an eager GPU step launches. Counted on CPU by a dispatch mode; the counts depend on
the code, not on the length (but for the kNN's query chunks, L / 128 of them).

    python scripts/count_step_ops.py ['model.attention={name:flash_ipa,backend:sdpa}' ...]
"""

from __future__ import annotations

import sys
from collections import Counter

import torch
from hydra.utils import instantiate
from torch.utils._python_dispatch import TorchDispatchMode

from flashipa_train.config import compose_train_config
from flashipa_train.data.synthetic import synthetic_batch

VIEWS = {
    "view",
    "_unsafe_view",
    "unsqueeze",
    "squeeze",
    "expand",
    "t",
    "transpose",
    "permute",
    "select",
    "slice",
    "detach",
    "split_with_sizes",
    "split",
    "alias",
    "as_strided",
    "unbind",
    "reshape",
}


class OpCounter(TorchDispatchMode):
    """Counts every ATen call under the label on top of `where` (a stack of part names)."""

    def __init__(self):
        super().__init__()
        self.where = ["outside the parts (noise, losses, FlowModel.forward itself)"]
        self.counts: Counter[tuple[str, bool]] = Counter()  # (part, is a view) -> calls

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[(self.where[-1], func.__name__.split(".")[0] in VIEWS)] += 1
        return func(*args, **(kwargs or {}))


def label_parts(model: torch.nn.Module, counter: OpCounter) -> None:
    """Forward hooks that name each child of the model (a ModuleList's members share its name)."""
    for name, child in model.named_children():
        for member in child if isinstance(child, torch.nn.ModuleList) else [child]:
            member.register_forward_pre_hook(lambda m, a, name=name: counter.where.append(name))
            member.register_forward_hook(lambda m, a, o: counter.where.pop() and None)  # None: output kept


def main() -> None:
    cfg = compose_train_config(
        ["experiment=scaling", "data.length=64", *sys.argv[1:]], output_dir="/tmp/count_step_ops"
    )
    model, flow = instantiate(cfg.model, _convert_="all"), instantiate(cfg.flow)
    batch = synthetic_batch(2, 64, torch.Generator().manual_seed(0))
    batch["all_real"] = True
    counter = OpCounter()
    label_parts(model, counter)
    for probability in (0.0, 1.0):  # without and with the self-conditioning pass
        flow.self_condition_prob = probability
        counter.counts.clear()
        with counter:
            loss = flow.training_loss(model, batch, generator=torch.Generator().manual_seed(1))["loss"]
            counter.where.append("backward (all parts)")
            loss.backward()
            counter.where.pop()
        parts = Counter()
        for (part, view), calls in counter.counts.items():
            parts[(part, "views" if view else "compute")] += calls
        total = sum(counter.counts.values())
        compute = sum(c for (_, v), c in counter.counts.items() if not v)
        print(f"self-conditioning pass: {'yes' if probability else 'no'}; {total} ATen calls, {compute} not views")
        print(f"{'compute':>8} {'views':>7}  part")
        for part in sorted({p for p, _ in parts}, key=lambda p: -parts[(p, "compute")]):
            print(f"{parts[(part, 'compute')]:8d} {parts[(part, 'views')]:7d}  {part}")


if __name__ == "__main__":
    main()
