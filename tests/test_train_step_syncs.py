"""The pieces that keep the training step free of host synchronisations on a GPU, checked on CPU: the fused
AdamW chosen by where the parameters live, gradient clipping of a fused optimizer under bf16, `compile: auto`,
the SyncProbe that names synchronisations, the StepProfiler's GPU busy time, and pinned synthetic batches."""

import warnings
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.plugins.precision import MixedPrecision

from flashipa_train.data.synthetic import SyntheticDataModule
from flashipa_train.scaling.step_profiler import _busy_ms
from flashipa_train.scaling.sync_probe import SyncProbe
from flashipa_train.train import compile_choice
from flashipa_train.train.compile_choice import resolved_compile
from flashipa_train.train.module import FlowModule
from flashipa_train.train.optimizer import adamw


def test_adamw_auto_keeps_torch_default_on_cpu_and_explicit_choices_win():
    params = [torch.nn.Parameter(torch.ones(3))]
    assert not adamw(params, lr=1e-3).defaults["fused"]  # CPU: torch's default, as before
    assert adamw(params, fused=True, lr=1e-3).defaults["fused"] is True
    with pytest.raises(ValueError, match="optimizer.fused='yes'"):
        adamw(params, fused="yes")


def test_a_fused_optimizer_is_clipped_under_bf16_where_lightning_refuses():
    weight = torch.nn.Parameter(torch.zeros(4))
    weight.grad = torch.full((4,), 3.0)  # norm 6
    optimizer = torch.optim.AdamW([weight], fused=True)
    module = FlowModule(model=torch.nn.Linear(1, 1), flow=None, optimizer=adamw)
    module._trainer = SimpleNamespace(precision_plugin=MixedPrecision("bf16-mixed", "cpu"))
    with pytest.raises(RuntimeError, match="fused"):  # what Lightning itself does
        MixedPrecision("bf16-mixed", "cpu").clip_gradients(optimizer, 1.0)
    module.configure_gradient_clipping(optimizer, 1.0, "norm")
    assert weight.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def _cfg(data, accelerator="auto", option="auto"):
    return OmegaConf.create({"compile": option, "data": data, "trainer": {"accelerator": accelerator}})


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"length": 256, "batch_size": None, "tokens_per_batch": 2048}, {"mode": "reduce-overhead"}),  # 256 x 8
        ({"length": 4096, "batch_size": None, "tokens_per_batch": 2048}, {"mode": "reduce-overhead"}),
        ({"length": 32768, "batch_size": None, "tokens_per_batch": 2048}, False),  # GPU-bound: eager
        ({"crop_length": 256, "max_tokens_per_batch": 4096}, False),  # real chains: shapes vary per batch
    ],
)
def test_compile_auto_turns_cuda_graphs_on_for_short_fixed_shape_batches_on_a_gpu(monkeypatch, data, expected):
    monkeypatch.setattr(compile_choice.torch.cuda, "is_available", lambda: True)
    resolved = resolved_compile(_cfg(data))
    assert (OmegaConf.to_container(resolved) if resolved else resolved) == expected
    assert resolved_compile(_cfg(data, accelerator="cpu")) is False


def test_compile_auto_is_eager_on_cpu_and_other_settings_pass_through():
    short = {"length": 256, "batch_size": None, "tokens_per_batch": 2048}
    if not torch.cuda.is_available():
        assert resolved_compile(_cfg(short)) is False
    assert resolved_compile(_cfg(short, option=False)) is False
    assert resolved_compile(_cfg(short, option=True)) is True


def _synchronising_call():
    warnings.warn("called a synchronizing CUDA operation", UserWarning)


def test_sync_probe_counts_synchronisations_by_call_site_and_lets_other_warnings_through(tmp_path):
    probe = SyncProbe(out_file=str(tmp_path / "syncs.txt"))
    probe.start()
    for _ in range(3):
        _synchronising_call()
    with pytest.warns(DeprecationWarning):
        warnings.warn("something else", DeprecationWarning)
    probe.stop()
    ((site, count),) = probe.sites.items()
    assert count == 3 and "_synchronising_call" in site and "test_train_step_syncs.py" in site
    assert "3 host synchronisations" in (tmp_path / "syncs.txt").read_text()
    with warnings.catch_warnings(record=True):
        _synchronising_call()  # stopped: no longer counted
    assert sum(probe.sites.values()) == 3


def test_synthetic_batches_are_pinned_only_when_cuda_is_there():
    data = SyntheticDataModule(length=16, tokens_per_batch=32, num_train_batches=2, num_distinct=1)
    data.setup()
    assert data.train_dataset[0]["atoms"].is_pinned() == torch.cuda.is_available()


def test_step_profiler_counts_the_gpu_busy_time_as_the_union_of_overlapping_device_intervals():
    def event(start, end, device=torch.autograd.DeviceType.CUDA):
        return SimpleNamespace(device_type=device, time_range=SimpleNamespace(start=start, end=end))

    events = [
        event(0, 1000),
        event(500, 1500),
        event(3000, 4000),
        event(3100, 3200),
        event(0, 9000, torch.autograd.DeviceType.CPU),
    ]  # microseconds; host events do not count
    assert _busy_ms(SimpleNamespace(events=lambda: events)) == 2.5
