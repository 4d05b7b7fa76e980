"""FlowModel: one forward + backward per attention variant and backend, masks, rigid-motion equivariance."""

import pytest
import torch

from flashipa_train.geometry import so3_exp, uniform_so3
from flashipa_train.model import FlowModel, variant_fields
from flashipa_train.model.attention_flash import FlashIPAAttention

TINY = dict(
    c_s=32,
    c_hidden=8,
    num_blocks=2,
    num_heads=2,
    num_qk_points=2,
    num_v_points=3,
    seq_transformer_layers=1,
    seq_transformer_heads=2,
    knn=6,
)


# the variants' own pair sizes at tiny size
TINY_PAIR = dict(pair_rank=2, c_pair_value=8)  # flash family
TINY_C_Z = 16  # dense_ipa


def tiny_attention(name, backend="torch"):
    """{"name", "backend"} and the variant's own pair sizes at tiny size."""
    own = {"c_z": TINY_C_Z} if "c_z" in variant_fields(name) else TINY_PAIR
    return {"name": name, "backend": backend, **own}


def tiny_model(name, backend="torch", **overrides):
    torch.manual_seed(0)
    model = FlowModel(tiny_attention(name, backend), **{**TINY, **overrides})
    # FrameFlow zero-initialises the output layers; randomise them so that every path is exercised
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0.0, 0.1)
    return model


def noisy_inputs(B=2, L=11, dtype=torch.float32, self_condition=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    res_mask = torch.ones(B, L, dtype=torch.bool)
    if B > 1:
        res_mask[-1, L - 3 :] = False
    noisy = {
        "trans_t": torch.randn(B, L, 3, generator=g, dtype=dtype) * 8,
        "rots_t": uniform_so3((B, L), dtype=dtype, generator=g),
        "t": torch.rand(B, generator=g, dtype=dtype),
        "res_mask": res_mask,
        "residue_index": torch.arange(L).expand(B, L) + 5,
        "chain_index": (torch.arange(L) >= L // 2).long().expand(B, L).contiguous(),
    }
    if self_condition:
        noisy["trans_sc"] = torch.randn(B, L, 3, generator=g, dtype=dtype) * 8
    return noisy


VARIANTS = [
    ("dense_ipa", "torch"),
    ("flash_ipa", "torch"),
    ("flash_ipa", "sdpa"),
    ("inattention", "torch"),
    ("inattention", "sdpa"),
]


@pytest.mark.parametrize("self_condition", [False, True])
@pytest.mark.parametrize("name,backend", VARIANTS)
def test_forward_backward_is_finite_and_reaches_every_parameter(name, backend, self_condition):
    model = tiny_model(name, backend)
    out = model(noisy_inputs(self_condition=self_condition))
    assert out["pred_trans"].shape == (2, 11, 3) and out["pred_rots"].shape == (2, 11, 3, 3)
    assert out["pred_psi"].shape == (2, 11, 2) and out["pred_atoms"].shape == (2, 11, 4, 3)
    loss = out["pred_atoms"].square().mean() + out["pred_rots"].sum() + out["pred_psi"].sum()
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (DDP would fail): {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["flash_ipa", "inattention"])
def test_triton_backend_under_the_interpreter_matches_torch(name, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    noisy = noisy_inputs(B=1, L=8)
    ref = tiny_model(name, "torch")(noisy)["pred_atoms"]
    model = tiny_model(name, "triton")
    out = model(noisy)["pred_atoms"]
    out.square().mean().backward()
    assert torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref) < 1e-3
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_unknown_variant_and_backend_are_named():
    with pytest.raises(ValueError, match="model.attention.name='nope'"):
        FlowModel({"name": "nope"}, **TINY)
    with pytest.raises(ValueError, match="backend='cuda'"):
        FlowModel({"name": "flash_ipa", "backend": "cuda"}, **TINY)


@pytest.mark.parametrize("name", ["dense_ipa", "flash_ipa", "inattention"])
def test_padded_residues_do_not_change_real_ones(name):
    model = tiny_model(name).double()
    L_real, L_pad = 9, 14
    short = noisy_inputs(B=1, L=L_real, dtype=torch.float64, self_condition=True)
    short["res_mask"][:] = True
    g = torch.Generator().manual_seed(1)
    padded = {
        "trans_t": torch.cat(
            [short["trans_t"], torch.randn(1, L_pad - L_real, 3, generator=g, dtype=torch.float64) * 50], 1
        ),
        "rots_t": torch.cat([short["rots_t"], uniform_so3((1, L_pad - L_real), dtype=torch.float64, generator=g)], 1),
        "trans_sc": torch.cat(
            [short["trans_sc"], torch.randn(1, L_pad - L_real, 3, generator=g, dtype=torch.float64)], 1
        ),
        "t": short["t"],
        "res_mask": torch.arange(L_pad)[None] < L_real,
        "residue_index": torch.arange(L_pad)[None] * 3,
        "chain_index": torch.cat([short["chain_index"], torch.full((1, L_pad - L_real), 5)], 1),
    }
    padded["residue_index"][:, :L_real] = short["residue_index"]
    a, b = model(short), model(padded)
    for key in ("pred_trans", "pred_rots", "pred_psi", "pred_atoms"):
        torch.testing.assert_close(b[key][:, :L_real], a[key], rtol=1e-9, atol=1e-9)


def _random_rigid_motion(dtype):
    g = torch.Generator().manual_seed(7)
    rot = so3_exp(torch.randn(3, generator=g, dtype=dtype) * 2)  # [3, 3]
    shift = torch.randn(3, generator=g, dtype=dtype) * 20  # [3]
    return rot, shift


@pytest.mark.parametrize("name", ["dense_ipa", "flash_ipa", "inattention"])
def test_output_is_equivariant_to_global_rigid_motion(name):
    model = tiny_model(name).double()
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
    torch.testing.assert_close(out_moved["pred_rots"][mask], (rot @ out["pred_rots"])[mask])
    torch.testing.assert_close(out_moved["pred_psi"][mask], out["pred_psi"][mask])
    torch.testing.assert_close(out_moved["pred_atoms"][mask], (out["pred_atoms"] @ rot.T + shift)[mask])


@pytest.mark.parametrize("name", ["flash_ipa", "inattention"])
def test_sdpa_trunk_reads_padding_once_per_forward_and_matches_with_or_without_padding(name):
    """With the sdpa backend the padding check (a host sync, a graph break under torch.compile) happens
    once in `prepare`, outside the block loop: dynamo sees one break. An unpadded batch run without a mask
    equals the same batch with its (all True) mask honoured by the reference."""
    model = tiny_model(name, "sdpa")
    noisy = noisy_inputs(B=1)
    explanation = torch._dynamo.explain(model)(noisy)
    # the one break, seen from the forward's frame and from prepare's
    where = {(r.user_stack[-1].filename.split("/")[-1], r.user_stack[-1].name) for r in explanation.break_reasons}
    assert where == {("attention_flash.py", "_all_real")}, explanation.break_reasons
    prepare = FlashIPAAttention.prepare  # the flag's part of prepare (InAttention adds keys from the frames)
    assert prepare(model.attention, torch.zeros(1, 11, TINY["c_s"]), None, noisy).all_real is True
    reference = tiny_model(name, "torch")
    torch.testing.assert_close(model(noisy)["pred_trans"], reference(noisy)["pred_trans"], rtol=1e-4, atol=1e-4)
    padded = noisy_inputs(B=2)
    assert prepare(model.attention, torch.zeros(2, 11, TINY["c_s"]), None, padded).all_real is False
    # the flag read off the CPU batch (FlowModule.on_before_batch_transfer): no device read, no break
    assert not torch._dynamo.explain(model)({**noisy, "all_real": True}).break_reasons
    assert (
        prepare(model.attention, torch.zeros(2, 11, TINY["c_s"]), None, {**padded, "all_real": False}).all_real is False
    )


def _saved_bytes_and_grads(model, noisy):
    """Bytes the autograd graph keeps for the backward (tensors packed outside checkpointed blocks) and
    the parameter gradients of one forward + backward."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(noisy)
    (out["pred_atoms"].square().mean() + out["pred_psi"].sum()).backward()
    return sum(saved), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("name,backend", [("flash_ipa", "torch"), ("inattention", "sdpa"), ("dense_ipa", "torch")])
def test_checkpointed_blocks_give_the_same_gradients_and_keep_less(name, backend):
    noisy = noisy_inputs(self_condition=True)
    kept, grads = _saved_bytes_and_grads(tiny_model(name, backend), noisy)
    kept_ckpt, grads_ckpt = _saved_bytes_and_grads(tiny_model(name, backend, checkpoint_blocks=2), noisy)
    assert len(grads) == len(grads_ckpt)
    for a, b in zip(grads, grads_ckpt):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert kept_ckpt < 0.5 * kept, (kept_ckpt, kept)


@pytest.mark.parametrize("name", ["dense_ipa", "flash_ipa"])
def test_an_all_real_batch_gives_the_same_output_without_the_sequence_transformers_mask(name):
    # all_real: the sequence transformer runs unmasked (FlashAttention / cuDNN on a GPU) with the same result
    model = tiny_model(name).double()
    noisy = noisy_inputs(B=1, dtype=torch.float64, self_condition=True)
    assert noisy["res_mask"].all()
    masked = model(noisy)["pred_atoms"]
    unmasked = model({**noisy, "all_real": True})["pred_atoms"]
    assert torch.linalg.vector_norm(unmasked - masked) / torch.linalg.vector_norm(masked) < 1e-12
