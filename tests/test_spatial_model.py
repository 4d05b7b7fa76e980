"""FlowModel with model/attention=spatial_ipa: gradients, masks, rigid-motion equivariance, the Triton
backend under the interpreter, and the Hydra CLI (train, then sample)."""

import re
from pathlib import Path

import pytest
import torch
from test_model_forward import TINY, TINY_PAIR, _random_rigid_motion, noisy_inputs
from test_train_cli import TINY_MODEL, _flashipa_train, small_folder  # noqa: F401 (fixture)

from flashipa_train.geometry import uniform_so3
from flashipa_train.model import FlowModel

SPATIAL = {"name": "spatial_ipa", "k": 4, "window": 2, "radius": 1.0}


def spatial_model(backend="torch", **options):
    torch.manual_seed(0)
    model = FlowModel({**SPATIAL, **TINY_PAIR, "backend": backend, **options}, **TINY)
    with torch.no_grad():  # randomise the zero-initialised output layers so every path is exercised
        for p in model.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("far_field", [False, True])
def test_forward_backward_is_finite_and_reaches_every_parameter(far_field):
    model = spatial_model(far_field=far_field, far_cell_size=0.5)
    out = model(noisy_inputs(self_condition=True))
    loss = out["pred_atoms"].square().mean() + out["pred_rots"].sum()
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_output_is_equivariant_to_global_rigid_motion():
    model = spatial_model().double()
    noisy = noisy_inputs(dtype=torch.float64, self_condition=True)
    rot, shift = _random_rigid_motion(torch.float64)
    moved = {
        **noisy,
        "trans_t": noisy["trans_t"] @ rot.T + shift,
        "rots_t": rot @ noisy["rots_t"],
        "trans_sc": noisy["trans_sc"] @ rot.T + shift,
    }
    out, out_moved = model(noisy), model(moved)
    mask = noisy["res_mask"]
    torch.testing.assert_close(out_moved["pred_trans"][mask], (out["pred_trans"] @ rot.T + shift)[mask])
    torch.testing.assert_close(out_moved["pred_atoms"][mask], (out["pred_atoms"] @ rot.T + shift)[mask])


def test_padded_residues_do_not_change_real_ones():
    model = spatial_model().double()
    short = noisy_inputs(B=1, L=9, dtype=torch.float64)
    short["res_mask"][:] = True
    pad = 5
    padded = {
        "trans_t": torch.cat([short["trans_t"], short["trans_t"][:, :pad] + 0.1], 1),  # padding among real residues
        "rots_t": torch.cat([short["rots_t"], short["rots_t"][:, :pad]], 1),
        "t": short["t"],
        "res_mask": torch.arange(9 + pad)[None] < 9,
        "residue_index": torch.cat([short["residue_index"], short["residue_index"][:, :pad]], 1),
        "chain_index": torch.cat([short["chain_index"], short["chain_index"][:, :pad]], 1),
    }
    a, b = model(short), model(padded)
    torch.testing.assert_close(b["pred_atoms"][:, :9], a["pred_atoms"], rtol=1e-9, atol=1e-9)


def test_triton_backend_under_the_interpreter_matches_torch():
    noisy = noisy_inputs(B=1, L=8)
    ref = spatial_model("torch")(noisy)["pred_atoms"]
    model = spatial_model("triton")
    out = model(noisy)["pred_atoms"]
    out.square().mean().backward()
    assert torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref) < 1e-4
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_option_names_the_config_file():
    with pytest.raises(ValueError, match="spatial_ipa.yaml"):
        FlowModel({**SPATIAL, "k": 0}, **TINY)


@pytest.mark.slow
def test_cli_trains_and_samples_with_spatial_ipa(tmp_path, small_folder):  # noqa: F811
    result = _flashipa_train(
        [
            "experiment=quickstart",
            "model/attention=spatial_ipa",
            "model.attention.k=8",
            "model.attention.far_field=true",
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


def _largest_tensor_of_a_training_step(L):
    """A training step on a compact chain: CA on a cubic lattice of 5 A (protein-like density)."""
    from test_model_no_pair_tensor import MICRO, MICRO_PAIR

    from flashipa_train.flow import FlowMatcher
    from flashipa_train.geometry import Rigid, backbone_atoms_from_frames
    from flashipa_train.largest_tensor import LargestTensor

    g = torch.Generator().manual_seed(0)
    side = round(L ** (1 / 3))
    grid = torch.stack(torch.meshgrid(*[torch.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:L]
    ca = 5.0 * grid.float() + 0.3 * torch.randn(L, 3, generator=g)
    frames = Rigid(uniform_so3((1, L), generator=g), ca[None])
    batch = {
        "atoms": backbone_atoms_from_frames(frames),
        "atom_mask": torch.ones(1, L, 4, dtype=torch.bool),
        "res_mask": torch.ones(1, L, dtype=torch.bool),
        "residue_index": torch.arange(L)[None],
        "chain_index": torch.zeros(1, L, dtype=torch.long),
    }
    model = FlowModel(
        {**SPATIAL, **MICRO_PAIR, "backend": "torch", "max_per_cell": 16}, **{**MICRO, "seq_transformer_layers": 0}
    )
    flow = FlowMatcher(self_condition_prob=1.0, local_loss_t_threshold=0.0)
    with LargestTensor() as record:
        flow.training_loss(model, batch, generator=g)["loss"].backward()
    return record


def test_largest_tensor_of_a_training_step_is_the_capped_candidate_search():
    """No L x L tensor: the largest is the candidate search's [L, 27 cells x max_per_cell, 3] (the noisy
    frames of training fill cells up to the cap), then the gathered lists, O(L k)."""
    L = 2744
    record = _largest_tensor_of_a_training_step(L)
    assert record.numel <= L * 27 * 16 * 3 < L * L // 2, f"{record.op} made a tensor of {record.numel} elements"
