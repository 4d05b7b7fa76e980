"""Unit specifications of the trainer's pieces: LR schedule, EMA, atomic checkpoint writing, weight loading."""

import math

import pytest
import torch
from torch import nn

from flashipa_train.checkpoint.weights import load_model_weights
from flashipa_train.train.checkpoint_io import atomic_torch_save
from flashipa_train.train.ema import EMA
from flashipa_train.train.lr_schedule import WarmupCosineLR


def test_lr_rises_linearly_during_warmup_then_follows_cosine_to_the_floor():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2.0)
    schedule = WarmupCosineLR(optimizer, total_steps=110, warmup_steps=10, min_lr_ratio=0.1, max_warmup_fraction=1.0)
    lrs = []
    for _ in range(120):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(2.0 * 1 / 10)
    assert lrs[9] == pytest.approx(2.0)
    midpoint = 10 + 50  # half-way through the decay
    assert lrs[midpoint] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))))
    assert lrs[110] == pytest.approx(0.2) and lrs[119] == pytest.approx(0.2)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[9:], lrs[10:]))


def test_warmup_is_capped_at_a_fraction_of_a_short_run():
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert WarmupCosineLR(optimizer, total_steps=2558, warmup_steps=1000).warmup_steps == 127
    assert WarmupCosineLR(optimizer, total_steps=200_000, warmup_steps=1000).warmup_steps == 1000


def test_ema_half_life_is_capped_at_a_fraction_of_max_steps():
    ema = EMA(decay=0.999)
    decay = ema.decay_for_run(2000)  # half-life at most 100 steps
    assert decay == pytest.approx(0.5 ** (1 / 100)) and math.log(0.5) / math.log(decay) == pytest.approx(100)
    assert ema.decay_for_run(1_000_000) == 0.999 and ema.decay_for_run(None) == 0.999
    assert EMA(decay=0.999, max_half_life_fraction=None).decay_for_run(2000) == 0.999


class _Holder(nn.Module):
    """Stands in for a LightningModule: EMA reads `pl_module.model`."""

    def __init__(self):
        super().__init__()
        self.model = nn.Linear(3, 2)


class _TrainerStub:
    accumulate_grad_batches = 1


def test_ema_matches_a_float64_reference_and_swaps_weights_in_and_out():
    torch.manual_seed(0)
    holder = _Holder()
    ema = EMA(decay=0.9)
    ema.on_fit_start(None, holder)
    reference = {n: p.detach().double().clone() for n, p in holder.model.named_parameters()}
    for step in range(1, 6):
        with torch.no_grad():
            for p in holder.model.parameters():
                p.add_(torch.randn_like(p))
        ema.on_train_batch_end(_TrainerStub(), holder, None, None, step - 1)
        decay = min(0.9, (1 + step) / (10 + step))
        for n, p in holder.model.named_parameters():
            reference[n] = decay * reference[n] + (1 - decay) * p.detach().double()
    for n, shadow in ema.shadow.items():
        rel = (shadow.double() - reference[n]).norm() / reference[n].norm()
        assert rel < 1e-6, n
    training_weight = holder.model.weight.detach().clone()
    with ema.ema_weights(holder):
        assert torch.equal(holder.model.weight, ema.shadow["weight"])
    assert torch.equal(holder.model.weight, training_weight)

    restored = EMA(decay=0.9)
    restored.load_state_dict(ema.state_dict())
    restored.on_fit_start(None, holder)
    assert restored.num_updates == 5 and torch.equal(restored.shadow["bias"], ema.shadow["bias"])


def test_atomic_save_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def crash_midway(obj, handle, *args, **kwargs):
        handle.write(b"partial checkpoint bytes")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="simulated"):
        atomic_torch_save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    survivor = torch.load(path, weights_only=True)
    assert survivor["step"] == 1 and torch.equal(survivor["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_loading_weights_of_another_shape_names_the_parameter_and_both_shapes(tmp_path):
    path = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {"model.weight": torch.zeros(4, 3), "model.bias": torch.zeros(4)}}, path)
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"'weight' has shape \(4, 3\) in the checkpoint but \(2, 3\)"):
        load_model_weights(model, path)
