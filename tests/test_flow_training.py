"""FlowMatcher: losses per variant, overfitting two real chains, invariance to a global rigid motion, sampler."""

import os

import pytest
import torch
from test_model_forward import tiny_attention

from flashipa_train.flow import FlowMatcher
from flashipa_train.flow.interpolant import clean_frames
from flashipa_train.geometry import so3_exp
from flashipa_train.model import FlowModel

DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "data")
TWO_CHAINS = (("1l2y.pdb.gz", "A"), ("1YCR.pdb.gz", "B"))  # Trp-cage (20 residues), p53 peptide (13)
TINY = dict(
    c_s=32,
    c_hidden=8,
    num_blocks=2,
    num_heads=4,
    num_qk_points=4,
    num_v_points=4,
    seq_transformer_layers=1,
    seq_transformer_heads=2,
    knn=8,
)
VARIANTS = [("dense_ipa", "torch"), ("flash_ipa", "torch"), ("flash_ipa", "sdpa"), ("inattention", "torch")]


def tiny_model(name, backend="torch"):
    torch.manual_seed(0)
    return FlowModel(tiny_attention(name, backend), **TINY)


def two_real_chains():
    """A padded batch of two real chains from data/, read with the data module's parser."""
    parser = pytest.importorskip("flashipa_train.data.structure_reader", reason="the data module's parser is absent")
    from flashipa_train.data.chain_features import chain_backbone, protein_chain_atoms

    chains = []
    for file_name, chain_id in TWO_CHAINS:
        path = os.path.join(DATA_DIR, file_name)
        if not os.path.exists(path):
            pytest.skip(f"{path} is absent (the default structure set in data/)")
        with open(path, "rb") as f:
            parsed = parser.parse_structure(path, f.read())
        chains.append(chain_backbone(chain_id, dict(protein_chain_atoms(parsed.atoms))[chain_id]))
    B, L = len(chains), max(c.length for c in chains)
    batch = {
        "atoms": torch.zeros(B, L, 4, 3),
        "atom_mask": torch.zeros(B, L, 4, dtype=torch.bool),
        "res_mask": torch.zeros(B, L, dtype=torch.bool),
        "residue_index": torch.zeros(B, L, dtype=torch.long),
        "chain_index": torch.zeros(B, L, dtype=torch.long),
    }
    for b, c in enumerate(chains):
        n = c.length
        batch["atoms"][b, :n] = torch.from_numpy(c.atoms)
        batch["atom_mask"][b, :n] = torch.from_numpy(c.atom_mask)
        batch["res_mask"][b, :n] = torch.from_numpy(c.atom_mask[:, :3].all(-1))
        batch["residue_index"][b, :n] = torch.from_numpy(c.residue_index.astype("int64"))
    return batch


@pytest.mark.parametrize("name,backend", VARIANTS)
def test_training_loss_with_self_conditioning_is_finite_with_finite_gradients(name, backend):
    model, flow = tiny_model(name, backend), FlowMatcher(self_condition_prob=1.0, local_loss_t_threshold=0.0)
    out = flow.training_loss(model, two_real_chains(), generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "trans_loss", "rot_loss", "atom_loss", "local_dist_loss", "t_mean"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in out.values())
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_padding_flag_of_the_cpu_batch_reaches_the_model_and_self_conditioning_gets_a_copy():
    """FlowModule reads `all_real` off the batch before it moves to the GPU; the flow matcher hands it to
    the model, and gives the training pass a copy of the no-grad pass's output (CUDA graphs reuse the
    memory of a graph's outputs at its next call)."""
    from flashipa_train.train.module import FlowModule

    batch = two_real_chains()
    assert FlowModule.on_before_batch_transfer(None, dict(batch), 0)["all_real"] is False
    batch["res_mask"][:] = True
    batch = FlowModule.on_before_batch_transfer(None, batch, 0)
    assert batch["all_real"] is True
    model, seen = tiny_model("flash_ipa", "sdpa"), []

    def recording_model(noisy):
        out = model(noisy)
        seen.append((noisy, out))
        return out

    FlowMatcher(self_condition_prob=1.0).training_loss(recording_model, batch, torch.Generator().manual_seed(0))
    (first, first_out), (second, _) = seen
    assert first["all_real"] is True and second["all_real"] is True
    assert second["trans_sc"].data_ptr() != first_out["pred_trans"].data_ptr()
    torch.testing.assert_close(second["trans_sc"], first_out["pred_trans"])


def overfit_losses(name, steps=50):
    """Losses of `steps` Adam steps on two real chains, the corruption fixed (same seed every step)."""
    batch = two_real_chains()
    model = tiny_model(name)
    flow = FlowMatcher(local_loss_t_threshold=0.0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = flow.training_loss(model, batch, generator=torch.Generator().manual_seed(0))["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dense_ipa", "flash_ipa", "inattention"])
def test_loss_falls_when_overfitting_two_real_chains(name):
    losses = overfit_losses(name)
    print(f"{name}: first loss {losses[0]:.4f}, last loss {losses[-1]:.4f}")
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["dense_ipa", "flash_ipa", "inattention"])
@pytest.mark.parametrize("self_condition", [False, True])
def test_losses_are_invariant_to_a_global_rigid_motion_of_the_input(name, self_condition):
    model = tiny_model(name).double()
    with torch.no_grad():  # randomise the zero-initialised output layers so the prediction moves
        for p in model.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0.0, 0.1)
    flow = FlowMatcher(local_loss_t_threshold=0.0)
    batch = {k: v.double() if v.is_floating_point() else v for k, v in two_real_chains().items()}
    g = torch.Generator().manual_seed(3)
    rot = so3_exp(torch.randn(3, generator=g, dtype=torch.float64) * 2)  # [3, 3]
    shift = torch.randn(3, generator=g, dtype=torch.float64) * 30  # [3]
    moved_atoms = batch["atoms"] @ rot.T + shift

    res_mask = batch["res_mask"]
    rots_1, trans_1 = clean_frames(batch["atoms"], res_mask)
    rots_1m, trans_1m = clean_frames(moved_atoms, res_mask)
    torch.testing.assert_close(rots_1m[res_mask], (rot @ rots_1)[res_mask])
    torch.testing.assert_close(trans_1m, trans_1 @ rot.T)  # the shift is removed by centring

    features = {k: batch[k] for k in ("res_mask", "residue_index", "chain_index")}
    noisy = {**flow.corrupt(rots_1, trans_1, res_mask, generator=g), **features}
    if self_condition:
        noisy["trans_sc"] = trans_1 + torch.randn(trans_1.shape, generator=g, dtype=torch.float64)
    noisy_m = {**noisy, "rots_t": rot @ noisy["rots_t"], "trans_t": noisy["trans_t"] @ rot.T}
    if self_condition:
        noisy_m["trans_sc"] = noisy["trans_sc"] @ rot.T
    # the data in the centred coordinates of trans_1 (as training_loss does)
    ca_centre = (batch["atoms"][..., 1, :] * res_mask[..., None]).sum(1) / res_mask.sum(1, keepdim=True)
    atoms_1 = batch["atoms"] - ca_centre[:, None, None]
    atoms_1m = atoms_1 @ rot.T
    losses = flow.losses(model(noisy), rots_1, trans_1, atoms_1, batch["atom_mask"], noisy)
    losses_m = flow.losses(model(noisy_m), rots_1m, trans_1m, atoms_1m, batch["atom_mask"], noisy_m)
    for key in losses:
        torch.testing.assert_close(losses_m[key], losses[key], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["dense_ipa", "flash_ipa", "inattention"])
@pytest.mark.parametrize("rot_schedule", ["exp", "linear"])
def test_sampler_returns_the_requested_lengths_with_finite_atoms(name, rot_schedule):
    model = tiny_model(name).eval()
    flow = FlowMatcher(rot_schedule=rot_schedule)
    out = flow.sample(model, [5, 9, 3], num_steps=4, generator=torch.Generator().manual_seed(0))
    assert out["atoms"].shape == (3, 9, 4, 3) and out["trans"].shape == (3, 9, 3) and out["rots"].shape == (3, 9, 3, 3)
    assert out["res_mask"].sum(-1).tolist() == [5, 9, 3]
    assert torch.isfinite(out["atoms"]).all() and torch.isfinite(out["rots"]).all()
    assert (out["atoms"][~out["res_mask"]] == 0).all()
    ca_ca = torch.linalg.vector_norm(out["atoms"][1, 1:, 1] - out["atoms"][1, :-1, 1], dim=-1)
    assert ca_ca.max() < 1e3  # coordinates stay in a sane range


@pytest.mark.parametrize("lengths, all_real", [([6, 6], True), ([6, 4], False)])
def test_sampler_tells_the_model_whether_its_batch_is_padded(lengths, all_real):
    model, flags = tiny_model("flash_ipa", "sdpa").eval(), []
    model.register_forward_pre_hook(lambda module, args: flags.append(args[0]["all_real"]))
    FlowMatcher().sample(model, lengths, num_steps=2, generator=torch.Generator().manual_seed(0))
    assert flags == [all_real] * 3


def test_invalid_flow_settings_are_named():
    with pytest.raises(ValueError, match="flow.t_min=1.5"):
        FlowMatcher(t_min=1.5)
    with pytest.raises(ValueError, match="flow.rot_schedule='cubic'"):
        FlowMatcher(rot_schedule="cubic")


@pytest.mark.parametrize("name", ["dense_ipa", "flash_ipa"])
def test_training_loss_runs_under_bf16_autocast_with_float32_geometry(name):
    model, flow = tiny_model(name), FlowMatcher(self_condition_prob=1.0, local_loss_t_threshold=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = flow.training_loss(model, two_real_chains(), generator=torch.Generator().manual_seed(0))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
