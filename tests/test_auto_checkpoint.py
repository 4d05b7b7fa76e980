"""model.checkpoint_blocks=auto: the activation probe, its extrapolation, the choice against a memory budget,
and the config path (on a CPU the callback checkpoints nothing)."""

import pytest
import torch
from test_validation_sampling import DATA, TINY

from flashipa_train.config import compose_train_config
from flashipa_train.data.synthetic import synthetic_batch
from flashipa_train.flow import FlowMatcher
from flashipa_train.model import FlowModel
from flashipa_train.train import auto_checkpoint
from flashipa_train.train.auto_checkpoint import (
    AutoCheckpointBlocks,
    blocks_to_checkpoint,
    choose_checkpoint_blocks,
    extrapolate,
    saved_activation_bytes,
)
from flashipa_train.train.cli import train
from flashipa_train.train.run_facts import describe_run, variant_label

SIZES = dict(c_s=32, c_hidden=8, num_blocks=4, num_heads=2, num_qk_points=2, num_v_points=2, knn=4)


def tiny(checkpoint_blocks=0):
    torch.manual_seed(0)
    attention = {"name": "flash_ipa", "backend": "torch", "pair_rank": 2, "c_pair_value": 8}
    return FlowModel(attention, checkpoint_blocks=checkpoint_blocks, **SIZES), FlowMatcher()


def test_budget_choice_and_extrapolation():
    # 10 units without, 4 with all 6 blocks checkpointed: one unit per block
    assert blocks_to_checkpoint(10.0, 4.0, 6, budget=7.0) == 3
    assert blocks_to_checkpoint(10.0, 4.0, 6, budget=12.0) == 0
    assert blocks_to_checkpoint(10.0, 4.0, 6, budget=1.0) == 6  # nothing fits: all of them
    assert extrapolate(100.0, 200.0, 256, 512, 4096) == pytest.approx(1600.0)  # linear
    assert extrapolate(100.0, 400.0, 256, 512, 1024) == pytest.approx(1600.0)  # quadratic
    assert extrapolate(100.0, 900.0, 256, 512, 1024) == pytest.approx(3600.0)  # growth capped at L^2


def test_probe_grows_linearly_on_the_flash_path_and_checkpointing_keeps_less():
    model, flow = tiny()
    sizes = [
        saved_activation_bytes(model, flow, synthetic_batch(1, n, torch.Generator().manual_seed(0))) for n in (64, 128)
    ]
    assert 1.6 < sizes[1] / sizes[0] < 2.2  # O(L): no L x L tensor is kept
    model.checkpoint_blocks = SIZES["num_blocks"]
    all_ckpt = saved_activation_bytes(model, flow, synthetic_batch(1, 128, torch.Generator().manual_seed(0)))
    assert all_ckpt < 0.5 * sizes[1]


def test_choice_follows_the_free_memory(monkeypatch):
    monkeypatch.setattr(auto_checkpoint, "PROBE_TOKENS", 32)
    model, flow = tiny()
    plenty = choose_checkpoint_blocks(model, flow, tokens=64, free_bytes=1e12)
    scarce = choose_checkpoint_blocks(model, flow, tokens=64, free_bytes=1e5)
    assert plenty == 0 and scarce == SIZES["num_blocks"] and model.checkpoint_blocks == 0
    # a budget between the two predictions gives some blocks, not all
    kept_none = extrapolate(
        *[
            saved_activation_bytes(model, flow, synthetic_batch(1, n, torch.Generator().manual_seed(0)))
            for n in (32, 64)
        ],
        32,
        64,
        64,
    )
    state = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    middle = choose_checkpoint_blocks(model, flow, tokens=64, free_bytes=state + 0.8 * kept_none / 0.6)
    assert 0 < middle < SIZES["num_blocks"]


def test_auto_is_accepted_by_the_model_and_zero_on_a_cpu():
    model, flow = tiny(checkpoint_blocks="auto")
    assert model.checkpoint_blocks == 0
    with pytest.raises(ValueError, match="or auto"):
        tiny(checkpoint_blocks="some")
    callback = AutoCheckpointBlocks(tokens=4096)

    class Module:
        pass

    module = Module()
    module.model, module.flow = model, flow
    callback.on_train_start(None, module)
    assert callback.chosen == 0 and model.checkpoint_blocks == 0


@pytest.mark.skipif(not DATA.is_dir(), reason="needs data/")
def test_a_tiny_fit_with_checkpoint_blocks_auto_runs_and_logs_it(tmp_path):
    overrides = [*TINY, "model.checkpoint_blocks=auto", "trainer.max_steps=1", "sample.lengths=[]"]
    overrides += [f"data.cache_dir={tmp_path / 'cache'}", "callbacks.validation_sampling=null"]
    cfg = compose_train_config(overrides, output_dir=tmp_path / "run")
    assert describe_run(cfg)["checkpoint_blocks"] == "auto"
    assert variant_label("flash_ipa", "torch", checkpoint_blocks="auto") == "flash_ipa/torch ckpt-auto"
    result = train(cfg)
    assert result["last_checkpoint"]
