"""Every load and store of the FlashIPA and alpha-entmax kernels stays inside its tensors (interpreter only).

On a GPU an out-of-bounds read of global memory either faults or silently reads a neighbour's data; the
interpreter does neither, so these tests check each active lane's address (tests/interpreter_bounds.py)
through a forward and backward with padding, a varlen batch, bias columns wider than the points and a bias
in a tile of its own.
"""

import pytest
import torch
from interpreter_bounds import checked_memory

from flashipa_kernels.entmax_ipa import entmax_ipa_attention
from flashipa_kernels.flash_ipa import flash_ipa_attention
from flashipa_kernels.flash_ipa.testing import BIAS_TILE_DIMS, NARROW_LO_DIMS, random_ipa_inputs

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter only (the GPU has compute-sanitizer)")


def _padded_inputs(dtype, dims=NARROW_LO_DIMS):
    torch.manual_seed(5)
    inputs = [x.requires_grad_() for x in random_ipa_inputs(2, 45, dims, dtype, "cpu")]
    mask = torch.ones(2, 45, dtype=torch.bool)
    mask[0, 40:] = False
    return inputs, mask


def _backward(outs, inputs):
    torch.autograd.grad(outs, inputs, [torch.randn_like(o) for o in outs], allow_unused=True)


@pytest.mark.parametrize(
    "dtype, dims", [(torch.float32, NARROW_LO_DIMS), (torch.bfloat16, NARROW_LO_DIMS), (torch.bfloat16, BIAS_TILE_DIMS)]
)
def test_flash_ipa_kernels_stay_in_bounds(dtype, dims, monkeypatch):
    from flashipa_kernels.flash_ipa import launch

    monkeypatch.setattr(launch, "BIAS_TILE", dims == BIAS_TILE_DIMS)
    inputs, mask = _padded_inputs(dtype, dims)
    with checked_memory():
        _backward(flash_ipa_attention(*inputs, mask=mask, allow_tf32=True), inputs)
        packed = [x.detach()[:1].requires_grad_() for x in inputs]  # one row of 45 as sequences 17 + 28
        cu_seqlens = torch.tensor([0, 17, 45], dtype=torch.int32)
        _backward(flash_ipa_attention(*packed, cu_seqlens=cu_seqlens), packed)


def test_entmax_ipa_kernels_stay_in_bounds():
    inputs, mask = _padded_inputs(torch.bfloat16)
    alpha = torch.tensor([1.5, 1.25], requires_grad=True)
    with checked_memory():
        _backward(entmax_ipa_attention(*inputs, alpha, mask), [*inputs, alpha])
