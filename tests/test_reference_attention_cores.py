"""The factorized IPA attention core computes exactly the dense IPA attention (values and gradients)."""

import pytest
import torch

from flashipa_kernels.backends import attention_core
from flashipa_kernels.reference import (
    dense_ipa_attention,
    factorized_ipa_attention,
    pair_bias_from_factors,
    pair_values_from_factors,
)

B, H, C, C_V, P_Q, P_V, C_Z = 2, 3, 5, 4, 3, 2, 6
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def rel_err(x, ref):
    """||x - ref|| / ||ref||; the absolute error where ref is exactly zero (e.g. grad q at L = 1)."""
    scale = ref.norm().item() or 1.0
    return (x.double() - ref).norm().item() / scale


def random_mask(L, generator):
    """[B, L] bool: batch 0 all real, batch 1 with about a third of its residues padded (L > 1)."""
    mask = torch.ones(B, L, dtype=torch.bool)
    if L > 1:
        mask[1] = torch.rand(L, generator=generator) > 0.33
        mask[1, 0] = True
    return mask


def random_core_inputs(L, R, seed):
    """Float64 leaf tensors for `factorized_ipa_attention`, in its argument order."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    return dict(
        q=randn(B, L, H, C),
        k=randn(B, L, H, C),
        v=randn(B, L, H, C_V),
        q_pts=randn(B, L, H, P_Q, 3),
        k_pts=randn(B, L, H, P_Q, 3),
        v_pts=randn(B, L, H, P_V, 3),
        bias_q=randn(B, L, H, R),
        bias_k=randn(B, L, H, R),
        pair_q=randn(B, L, R, C_Z),
        pair_k=randn(B, L, R, C_Z),
        point_weights=torch.nn.functional.softplus(randn(H)) * (1.0 / (3 * P_Q * 4.5)) ** 0.5,
    ), random_mask(L, g)


def dense_from_factors(inputs, mask):
    pair_bias = pair_bias_from_factors(inputs["bias_q"], inputs["bias_k"])  # [B, L, L, H]
    pair_values = pair_values_from_factors(inputs["pair_q"], inputs["pair_k"])  # [B, L, L, C_z]
    args = [inputs[name] for name in ("q", "k", "v", "q_pts", "k_pts", "v_pts")]
    return dense_ipa_attention(*args, pair_bias, pair_values, inputs["point_weights"], mask)


def outputs_and_input_grads(attention, inputs, mask, cotangents):
    leaves = {name: x.detach().requires_grad_() for name, x in inputs.items()}
    outputs = attention(leaves, mask)
    loss = sum((out * cot.to(out.dtype)).sum() for out, cot in zip(outputs, cotangents))
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return [out.detach() for out in outputs], dict(zip(leaves, grads))


@pytest.mark.parametrize("backend", ["torch", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("L", [1, 7, 64, 300])
@pytest.mark.parametrize("R", [1, 2, 4])
def test_factorized_core_matches_dense_attention_and_its_gradients(R, L, dtype, backend):
    inputs, mask = random_core_inputs(L, R, seed=1000 * R + L)
    g = torch.Generator().manual_seed(7)
    cotangents = [
        torch.randn(B, L, H, C_V, generator=g, dtype=torch.float64),
        torch.randn(B, L, H, P_V, 3, generator=g, dtype=torch.float64),
        torch.randn(B, L, H, C_Z, generator=g, dtype=torch.float64),
    ]
    ref_out, ref_grads = outputs_and_input_grads(dense_from_factors, inputs, mask, cotangents)

    def factorized(leaves, mask):
        return factorized_ipa_attention(**leaves, mask=mask, core=attention_core(backend))

    low = {name: x.to(dtype) for name, x in inputs.items()}
    out, grads = outputs_and_input_grads(factorized, low, mask, cotangents)

    tol = TOLERANCE[dtype]
    for name, x, ref in zip(["o", "o_pts", "o_pair"], out, ref_out):
        assert x.dtype == dtype
        assert rel_err(x, ref) <= tol, f"output {name}: rel err {rel_err(x, ref):.2e}"
    for name, ref in ref_grads.items():
        assert rel_err(grads[name], ref) <= tol, f"grad {name}: rel err {rel_err(grads[name], ref):.2e}"


def test_tiled_core_with_many_small_tiles_matches_dense_attention():
    inputs, mask = random_core_inputs(L=23, R=2, seed=3)
    ref = dense_from_factors(inputs, mask)
    out = factorized_ipa_attention(**inputs, mask=mask, core=attention_core("torch", tile=4))
    for x, r in zip(out, ref):
        assert rel_err(x, r) <= 1e-12


def test_gradcheck_dense_ipa_attention():
    inputs, mask = random_core_inputs(L=5, R=2, seed=11)
    names = list(inputs)

    def dense(*tensors):
        return dense_from_factors(dict(zip(names, tensors)), mask)

    leaves = [x.requires_grad_() for x in inputs.values()]
    assert torch.autograd.gradcheck(dense, leaves)


def test_gradcheck_factorized_core_with_several_tiles_through_the_custom_backward():
    # L = 5 with tile 2: tiles of 2, 2 and 1 queries and keys; batch 1 has padded keys
    inputs, mask = random_core_inputs(L=5, R=2, seed=12)
    assert not mask.all()
    names = list(inputs)

    def factorized(*tensors):
        return factorized_ipa_attention(**dict(zip(names, tensors)), mask=mask, core=attention_core("torch", tile=2))

    leaves = [x.requires_grad_() for x in inputs.values()]
    assert torch.autograd.gradcheck(factorized, leaves)
