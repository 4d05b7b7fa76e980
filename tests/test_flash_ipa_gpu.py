"""FlashIPA kernel on a CUDA GPU at the anchor model's dims and long sequences (marked `gpu`)."""

import pytest
import torch

from flashipa_kernels.flash_ipa import flash_ipa_attention
from flashipa_kernels.flash_ipa.benchmark import ANCHOR
from flashipa_kernels.flash_ipa.testing import INPUT_NAMES, random_ipa_inputs, relative_error
from flashipa_kernels.reference import tiled_ipa_attention

pytestmark = pytest.mark.gpu


def _outputs_and_grads(fn, inputs, grad_outputs):
    inputs = [x.detach().requires_grad_() for x in inputs]
    outs = fn(inputs)
    grads = torch.autograd.grad(outs, inputs, grad_outputs)
    return [o.detach() for o in outs], list(grads)


def _compare(inputs, mask, ref_dtype, tol, **kwargs):
    """Kernel outputs and grads vs the tiled torch reference run on `ref_dtype` copies, on the GPU."""
    torch.manual_seed(0)
    with torch.no_grad():
        grad_outputs = [torch.randn_like(o) for o in flash_ipa_attention(*inputs, mask=mask, **kwargs)]
    outs, grads = _outputs_and_grads(lambda xs: flash_ipa_attention(*xs, mask=mask, **kwargs), inputs, grad_outputs)
    ref_in = [x.to(ref_dtype) for x in inputs]
    ref_outs, ref_grads = _outputs_and_grads(
        lambda xs: tiled_ipa_attention(*xs, mask=mask, tile=1024),
        ref_in,
        [g.to(ref_dtype) for g in grad_outputs],
    )
    errors = {n: relative_error(a, b) for n, a, b in zip(("o", "o_pts", "o_pair"), outs, ref_outs)}
    errors.update({"d" + n: relative_error(a, b) for n, a, b in zip(INPUT_NAMES, grads, ref_grads)})
    print(errors)
    bad = {n: e for n, e in errors.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad}"


def test_bf16_anchor_dims_at_16384_residues_200_angstrom_out_match_float64_reference():
    L = 16384
    inputs = random_ipa_inputs(1, L, ANCHOR, torch.bfloat16, "cuda", point_scale=3.0, point_offset=200.0)
    mask = torch.ones(1, L, dtype=torch.bool, device="cuda")
    mask[0, L - 300 :] = False
    _compare(inputs, mask, torch.float64, 1e-2)


def test_fp32_exact_mode_matches_float64_reference_at_2048_residues():
    inputs = random_ipa_inputs(2, 2048, ANCHOR, torch.float32, "cuda")
    mask = torch.ones(2, 2048, dtype=torch.bool, device="cuda")
    mask[1, 1500:] = False
    _compare(inputs, mask, torch.float64, 1e-5, allow_tf32=False)


def test_fp32_tf32_mode_is_close_to_float64_reference():
    inputs = random_ipa_inputs(1, 1024, ANCHOR, torch.float32, "cuda")
    _compare(inputs, None, torch.float64, 5e-3, allow_tf32=True)


def test_forward_is_deterministic_at_16384_residues():
    inputs = random_ipa_inputs(1, 16384, ANCHOR, torch.bfloat16, "cuda")
    first = flash_ipa_attention(*inputs)
    second = flash_ipa_attention(*inputs)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_varlen_equals_padded_batch_on_gpu():
    lengths = [1000, 3000, 50]
    L = max(lengths)
    padded = random_ipa_inputs(len(lengths), L, ANCHOR, torch.bfloat16, "cuda")
    mask = torch.zeros(len(lengths), L, dtype=torch.bool, device="cuda")
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    packed = [x if x.dim() == 1 else torch.cat([x[b, :n] for b, n in enumerate(lengths)])[None] for x in padded]
    cu = torch.tensor([0, 1000, 4000, 4050], dtype=torch.int32, device="cuda")
    out_packed = flash_ipa_attention(*packed, cu_seqlens=cu)
    out_padded = flash_ipa_attention(*padded, mask=mask)
    for a, b in zip(out_packed, out_padded):
        b = torch.cat([b[i, :n] for i, n in enumerate(lengths)])[None]
        assert relative_error(a, b) <= 1e-6


def test_torch_compile_inductor_fullgraph_on_gpu():
    inputs = [x.requires_grad_() for x in random_ipa_inputs(2, 512, ANCHOR, torch.bfloat16, "cuda")]

    def loss(*xs):
        o, o_pts, o_pair = flash_ipa_attention(*xs)
        return o.float().square().sum() + o_pts.float().sum() + o_pair.float().sum()

    compiled = torch.compile(loss, fullgraph=True)(*inputs)
    eager = loss(*inputs)
    torch.testing.assert_close(compiled, eager)
    grads = torch.autograd.grad(compiled, inputs)
    assert all(torch.isfinite(g).all() for g in grads)
