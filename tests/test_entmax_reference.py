"""alpha-entmax IPA references: the float64 dense one (bisection) and the tiled PyTorch one (Halley)."""

import pytest
import torch

from flashipa_kernels.entmax_ipa import dense_entmax_ipa_attention, tiled_entmax_ipa_attention
from flashipa_kernels.entmax_ipa.reference_dense import entmax_bisect
from flashipa_kernels.entmax_ipa.reference_tiled import tile_threshold
from flashipa_kernels.flash_ipa.testing import IPADims, random_ipa_inputs, relative_error
from flashipa_kernels.reference.factorized_attention import ipa_attention_features, tiled_ipa_attention

ODD_DIMS = IPADims(heads=3, c=5, c_v=7, p_q=3, p_v=5, r_bias=2, r_pair=3, c_z=6)
TINY_DIMS = IPADims(heads=2, c=3, c_v=2, p_q=2, p_v=2, r_bias=1, r_pair=1, c_z=2)


def test_entmax_weights_sum_to_one_and_alpha_two_is_sparsemax():
    torch.manual_seed(0)
    s = torch.randn(4, 9, dtype=torch.float64) * 2
    s[1, 3:] = float("-inf")  # masked keys get weight zero
    for alpha in (1.2, 1.5, 2.0):
        p = entmax_bisect(s, alpha)
        torch.testing.assert_close(p.sum(-1), torch.ones(4, dtype=torch.float64))
        assert torch.all(p[1, 3:] == 0)
    # sparsemax by sorting (Martins & Astudillo 2016)
    z, _ = s.sort(-1, descending=True)
    k = torch.arange(1, 10, dtype=torch.float64)
    support = (1 + k * z > z.cumsum(-1)).sum(-1, keepdim=True)
    tau = (z.cumsum(-1).gather(-1, support - 1) - 1) / support
    torch.testing.assert_close(entmax_bisect(s, 2.0), torch.clamp(s - tau, min=0))


def test_entmax_jacobian_and_alpha_gradient_pass_gradcheck():
    torch.manual_seed(1)
    s = (torch.randn(3, 7, dtype=torch.float64) * 3).requires_grad_()
    alpha = torch.tensor([[1.3], [1.6], [1.9]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(entmax_bisect, (s, alpha))


def test_near_softmax_limit_matches_softmax_attention():
    torch.manual_seed(2)
    inputs = random_ipa_inputs(1, 12, ODD_DIMS, torch.float64)
    out = dense_entmax_ipa_attention(*inputs, alpha=1.0001)
    ref = tiled_ipa_attention(*inputs)
    assert relative_error(out[0], ref[0]) < 1e-3


def _padded_mask(B, L, lengths):
    mask = torch.zeros(B, L, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    return mask


def test_tiled_reference_matches_dense_in_float64_and_float32_with_padding():
    torch.manual_seed(3)
    B, L = 2, 37
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.float64)
    alpha = torch.tensor([1.5, 1.3, 2.0], dtype=torch.float64, requires_grad=True)
    mask = _padded_mask(B, L, [L, 29])
    x64 = [x.clone().requires_grad_() for x in inputs]
    ref = dense_entmax_ipa_attention(*x64, alpha, mask)
    grad_outputs = [torch.randn_like(o) for o in ref]
    ref_grads = torch.autograd.grad(ref, x64 + [alpha], grad_outputs)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        x = [t.to(dtype).requires_grad_() for t in inputs]
        a = alpha.detach().to(dtype).requires_grad_()
        out = tiled_entmax_ipa_attention(*x, a, mask, tile=16)
        grads = torch.autograd.grad(out, x + [a], [g.to(dtype) for g in grad_outputs])
        errors = [relative_error(o, r) for o, r in zip(out + grads, ref + ref_grads)]
        assert max(errors) <= tol, (dtype, errors)
        for o in out:  # padded queries output zero
            assert torch.all(o[1, 29:] == 0)


def test_tiled_reference_passes_gradcheck_with_learnable_alpha():
    torch.manual_seed(4)
    inputs = [x.requires_grad_() for x in random_ipa_inputs(1, 6, TINY_DIMS, torch.float64)]
    alpha = torch.tensor([1.5, 1.8], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    assert torch.autograd.gradcheck(
        lambda *xs: tiled_entmax_ipa_attention(*xs[:-1], xs[-1], mask, tile=4), (*inputs, alpha)
    )


def test_dense_reference_passes_gradcheck():
    torch.manual_seed(5)
    inputs = [x.requires_grad_() for x in random_ipa_inputs(1, 5, TINY_DIMS, torch.float64)]
    alpha = torch.tensor([1.4, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *xs: dense_entmax_ipa_attention(*xs[:-1], xs[-1]), (*inputs, alpha))


@pytest.mark.parametrize("alpha", [1.25, 1.5, 2.0])
def test_halley_needs_several_times_fewer_passes_than_bisection(alpha):
    torch.manual_seed(6)
    inputs = random_ipa_inputs(1, 64, ODD_DIMS, torch.float64)
    q_feat, k_feat, _ = ipa_attention_features(*inputs)
    q, k = q_feat.transpose(1, 2), k_feat.transpose(1, 2)  # [B, H, L, D]
    key_bias = torch.zeros(1, 64, dtype=torch.float64)
    a = torch.full((1, 3, 1, 1), alpha, dtype=torch.float64)
    passes = {
        m: tile_threshold(q, k, key_bias, a, 32, method=m, tol=1e-10)[2].double().mean() for m in ("halley", "bisect")
    }
    assert passes["bisect"] >= 5 * passes["halley"], passes
