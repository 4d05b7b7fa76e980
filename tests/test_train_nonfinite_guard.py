"""NonFiniteGuard: a bad step skipped on the device with a fused AdamW (reported when its flags are read),
stopped on request, and read every step with a plain AdamW."""

import logging
import math
from types import SimpleNamespace

import pytest
import torch

from flashipa_train.train.nonfinite_guard import NonFiniteGuard, skips_on_device


def _guard_setup(fused: bool):
    param = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    optimizer = torch.optim.AdamW([param], lr=0.1, fused=fused)
    module = SimpleNamespace(device=torch.device("cpu"), last_loss=None, last_sources=["fileA chain B"])
    trainer = SimpleNamespace(global_step=0)
    return param, optimizer, module, trainer


def _step(guard, param, optimizer, module, trainer, grad):
    param.grad = grad.clone()
    module.last_loss = grad.sum()
    guard.on_before_optimizer_step(trainer, module, optimizer)
    optimizer.step()
    trainer.global_step += 1


def test_guard_with_fused_adamw_skips_a_bad_step_on_the_device_and_reports_it_later(caplog):
    param, optimizer, module, trainer = _guard_setup(fused=True)
    assert skips_on_device(optimizer)
    guard = NonFiniteGuard(action="skip", check_every_n_steps=3)
    _step(guard, param, optimizer, module, trainer, torch.randn(4, dtype=torch.float64))
    before = param.detach().clone()
    moments = optimizer.state[param]["exp_avg"].clone()
    with caplog.at_level(logging.WARNING):
        _step(guard, param, optimizer, module, trainer, torch.tensor([1.0, math.nan, 0.0, 0.0], dtype=torch.float64))
        assert not [r for r in caplog.records if "NonFiniteGuard" in r.getMessage()]  # not read yet
        assert torch.equal(param.detach(), before) and torch.equal(optimizer.state[param]["exp_avg"], moments)
        assert float(optimizer.state[param]["step"]) == 1.0
        _step(guard, param, optimizer, module, trainer, torch.randn(4, dtype=torch.float64))  # third: read
    warnings = [r.getMessage() for r in caplog.records if "NonFiniteGuard" in r.getMessage()]
    assert len(warnings) == 1 and "global step 1" in warnings[0] and "fileA chain B" in warnings[0]
    assert guard.num_skipped == 1 and not torch.equal(param.detach(), before)


def test_guard_with_fused_adamw_stops_when_its_flags_are_read():
    param, optimizer, module, trainer = _guard_setup(fused=True)
    guard = NonFiniteGuard(action="stop", check_every_n_steps=100)
    _step(guard, param, optimizer, module, trainer, torch.full((4,), math.inf, dtype=torch.float64))
    with pytest.raises(FloatingPointError, match="fileA chain B"):
        guard.on_train_end(trainer, module)


def test_guard_with_a_plain_adamw_reads_every_step_and_drops_the_gradients():
    param, optimizer, module, trainer = _guard_setup(fused=False)
    assert not skips_on_device(optimizer)
    guard = NonFiniteGuard(action="skip", check_every_n_steps=100)
    before = param.detach().clone()
    _step(guard, param, optimizer, module, trainer, torch.tensor([math.nan] * 4, dtype=torch.float64))
    assert guard.num_skipped == 1 and torch.equal(param.detach(), before)
