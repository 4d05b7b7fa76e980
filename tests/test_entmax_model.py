"""model/attention=entmax_ipa: the FlowModel with alpha-entmax IPA (forward, masks, invariance, CLI)."""

import re
from pathlib import Path

import pytest
import torch
from test_model_forward import TINY, TINY_PAIR, noisy_inputs
from test_train_cli import TINY_MODEL, _flashipa_train, small_folder  # noqa: F401 (fixture)

from flashipa_train.geometry import so3_exp
from flashipa_train.model import FlowModel


def entmax_model(backend="torch", **attention):
    torch.manual_seed(0)
    model = FlowModel({"name": "entmax_ipa", "backend": backend, **TINY_PAIR, **attention}, **TINY)
    with torch.no_grad():  # randomise the zero-initialised output layers, as test_model_forward
        for p in model.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0.0, 0.1)
    return model


def test_forward_backward_reaches_every_parameter_including_learned_alpha():
    model = entmax_model(alpha=1.5, learn_alpha=True)
    out = model(noisy_inputs(self_condition=True))
    (out["pred_atoms"].square().mean() + out["pred_psi"].sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    alpha = model.attention.ipa[0].alpha()
    torch.testing.assert_close(alpha, torch.full((TINY["num_heads"],), 1.5))
    assert model.attention.ipa[0].alpha_logit.grad.abs().sum() > 0


def test_triton_backend_under_the_interpreter_matches_torch(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    noisy = noisy_inputs(B=1, L=8)
    ref = entmax_model("torch", alpha=1.7)(noisy)["pred_atoms"]
    model = entmax_model("triton", alpha=1.7, learn_alpha=True)
    out = model(noisy)["pred_atoms"]
    out.square().mean().backward()
    assert torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref) < 1e-3
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_output_is_equivariant_to_global_rigid_motion_and_padding_changes_nothing():
    model = entmax_model(alpha=1.5).double()
    noisy = noisy_inputs(dtype=torch.float64, self_condition=True)
    g = torch.Generator().manual_seed(7)
    rot, shift = so3_exp(torch.randn(3, generator=g, dtype=torch.float64) * 2), torch.randn(3, dtype=torch.float64) * 20
    moved = {
        **noisy,
        "trans_t": noisy["trans_t"] @ rot.T + shift,
        "rots_t": rot @ noisy["rots_t"],
        "trans_sc": noisy["trans_sc"] @ rot.T + shift,
    }
    out, out_moved = model(noisy), model(moved)
    mask = noisy["res_mask"]
    torch.testing.assert_close(out_moved["pred_atoms"][mask], (out["pred_atoms"] @ rot.T + shift)[mask])
    torch.testing.assert_close(out_moved["pred_psi"][mask], out["pred_psi"][mask])
    # the second chain of the batch without its 3 padded residues
    short = {k: v[1:, :8] for k, v in noisy.items() if k != "t"}
    short["t"] = noisy["t"][1:]
    torch.testing.assert_close(model(short)["pred_atoms"], out["pred_atoms"][1:, :8], rtol=1e-9, atol=1e-9)


def test_bad_alpha_and_backend_are_named():
    with pytest.raises(ValueError, match="model.attention.alpha=2.5"):
        FlowModel({"name": "entmax_ipa", "alpha": 2.5}, **TINY)
    with pytest.raises(ValueError, match="backend='sdpa'.*entmax_ipa"):
        FlowModel({"name": "entmax_ipa", "backend": "sdpa"}, **TINY)


@pytest.mark.slow
def test_hydra_cli_trains_entmax_ipa_and_samples(tmp_path, small_folder):  # noqa: F811
    result = _flashipa_train(
        [
            "experiment=quickstart",
            "model/attention=entmax_ipa",
            "model.attention.learn_alpha=true",
            f"data.pdb_dir={small_folder}",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "sample.lengths=[16]",
            "sample.num_steps=3",
            *TINY_MODEL,
        ],
        tmp_path,
    )
    samples = Path(re.search(r"sampled backbones \(PDB\): (\S+)", result.stdout).group(1))
    assert [p.name for p in samples.glob("*.pdb")] == ["len16_0.pdb"]
