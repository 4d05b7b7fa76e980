"""alpha-entmax IPA Triton kernels vs the float64 dense reference (Triton's interpreter on CPU).

Runs on CUDA instead when a GPU is present. Dims are odd on purpose (padded in registers only);
the interpreter's tiles are 16 x 16, so a few dozen residues already span several key blocks; the
chain tests scale their length with the tiles (64 x 32 on the GPU), so that blocks are skipped there too.
"""

import pytest
import torch

from flashipa_kernels.entmax_ipa import dense_entmax_ipa_attention, entmax_ipa_attention, entmax_ipa_threshold_stats
from flashipa_kernels.entmax_ipa.launch import BLOCKS
from flashipa_kernels.flash_ipa.testing import (
    ENTMAX_ODD_DIMS,
    INPUT_NAMES,
    chain_inputs,
    random_ipa_inputs,
    relative_error,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ODD_DIMS = ENTMAX_ODD_DIMS
OUTPUT_NAMES = ("o", "o_pts", "o_pair")


def _reference(inputs, alpha, grad_outputs, mask=None):
    x64 = [x.detach().to("cpu", torch.float64).requires_grad_() for x in inputs]
    a64 = alpha.detach().to("cpu", torch.float64).requires_grad_()
    outs = dense_entmax_ipa_attention(*x64, a64, None if mask is None else mask.cpu())
    grads = torch.autograd.grad(outs, x64 + [a64], [g.to("cpu", torch.float64) for g in grad_outputs])
    return outs, grads


def _errors(inputs, alpha, mask=None, **kwargs):
    inputs = [x.detach().requires_grad_() for x in inputs]
    alpha = alpha.detach().requires_grad_()
    outs = entmax_ipa_attention(*inputs, alpha, mask, **kwargs)
    # drawn on the CPU, so that a GPU run checks the same case as the interpreter
    grad_outputs = [torch.randn(o.shape, dtype=torch.float32).to(o.device, o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, inputs + [alpha], grad_outputs)
    ref_outs, ref_grads = _reference(inputs, alpha, grad_outputs, mask)
    errors = {n: relative_error(a, b) for n, a, b in zip(OUTPUT_NAMES, outs, ref_outs)}
    errors.update({"d" + n: relative_error(a, b) for n, a, b in zip(INPUT_NAMES + ("alpha",), grads, ref_grads)})
    return errors


def _chain_inputs(L, dims, dtype, seed=0):
    """testing.chain_inputs on DEVICE in dtype."""
    return [x.to(DEVICE, dtype) for x in chain_inputs(L, dims, seed=seed)]


def test_fp32_outputs_and_all_gradients_match_float64_reference_with_padding_mask():
    torch.manual_seed(0)
    B, L = 2, 37
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.float32, DEVICE)
    mask = torch.ones(B, L, dtype=torch.bool, device=DEVICE)
    mask[1, 29:] = False
    alpha = torch.tensor([1.5, 2.0], device=DEVICE)
    errors = _errors(inputs, alpha, mask, allow_tf32=False)
    # d alpha sums per-row terms that cancel about 10x (seeds 0-7: 2.5x-17x); each row is exact to about
    # 1e-6 of its own size in float32, which left d alpha at 0.3e-6-1.3e-5 on the interpreter
    assert errors.pop("dalpha") <= 3e-5, errors
    assert max(errors.values()) <= 1e-5, errors


def test_bf16_matches_float64_reference_on_a_chain_with_skipped_blocks():
    torch.manual_seed(2)
    alpha = torch.tensor([1.5, 1.25], device=DEVICE)
    # three blocks long (48 on the interpreter, 192 on the GPU): some key blocks are all zero and skipped
    stats = entmax_ipa_threshold_stats(*_chain_inputs(3 * max(BLOCKS[:2]), ODD_DIMS, torch.bfloat16), alpha)
    assert stats["kept_fraction"] < 0.8
    # the reference comparison at 96 on every device, a straight chain 36 nm long: d point_weights was off by
    # 2.8e-2 here while ds entered its point dot rounded to bf16 (now hi + lo: 3.3e-3 on the interpreter)
    inputs = _chain_inputs(96, ODD_DIMS, torch.bfloat16)
    errors = _errors(inputs, alpha)
    assert max(errors.values()) <= 1e-2, errors


@pytest.mark.slow
def test_skipped_blocks_leave_fp32_results_exact():
    torch.manual_seed(3)
    alpha = torch.tensor([1.5, 1.75], device=DEVICE)
    # four blocks long (64 on the interpreter, 256 on the GPU)
    chain = _chain_inputs(4 * max(BLOCKS[:2]), ODD_DIMS, torch.float32, seed=1)
    stats = entmax_ipa_threshold_stats(*chain, alpha, allow_tf32=False)
    assert stats["kept_fraction"] < 0.7
    assert stats["passes"].max() <= 5  # Halley-bisection: a few passes per row
    # the reference comparison at 64 on every device (longer straight chains: larger |z|, see below)
    inputs = _chain_inputs(64, ODD_DIMS, torch.float32, seed=1)
    errors = _errors(inputs, alpha, allow_tf32=False)
    # the chain's logits reach |z| ~ 50, whose float32 rounding (4e-6) alone moves d alpha by ~1e-5
    assert max(errors.values()) <= 3e-5, errors


def test_varlen_packed_sequences_and_a_padded_sequence_match_per_sequence_references():
    torch.manual_seed(4)
    lengths = [17, 23, 5]
    packed = random_ipa_inputs(1, sum(lengths), ODD_DIMS, torch.float32, DEVICE)
    packed = [x.requires_grad_() for x in packed]
    alpha = torch.tensor([1.5, 1.9], device=DEVICE, requires_grad=True)
    cu_seqlens = torch.tensor([0, 17, 40, 45], dtype=torch.int32, device=DEVICE)
    outs = entmax_ipa_attention(*packed, alpha, cu_seqlens=cu_seqlens, allow_tf32=False)
    grad_outputs = [torch.randn_like(o) for o in outs]
    grads = torch.autograd.grad(outs, packed + [alpha], grad_outputs)
    shared = torch.zeros(2, dtype=torch.float64)
    start = 0
    for n in lengths:
        rows = slice(start, start + n)
        per_seq = [x[:, rows] if x.dim() > 1 else x for x in packed]
        ref_outs, ref_grads = _reference(per_seq, alpha, [g[:, rows] for g in grad_outputs])
        for a, b in zip(outs, ref_outs):
            assert relative_error(a[:, rows], b) <= 1e-5
        for name, a, b in zip(INPUT_NAMES, grads, ref_grads):
            if name != "point_weights":
                assert relative_error(a[:, rows], b) <= 1e-5, name
        shared += ref_grads[-1]  # d alpha sums over sequences
        start += n
    assert relative_error(grads[-1], shared) <= 1e-5


def test_sequence_without_real_residues_outputs_zero_and_finite_gradients():
    torch.manual_seed(5)
    inputs = [x.requires_grad_() for x in random_ipa_inputs(2, 20, ODD_DIMS, torch.float32, DEVICE)]
    mask = torch.zeros(2, 20, dtype=torch.bool, device=DEVICE)
    mask[0] = True
    outs = entmax_ipa_attention(*inputs, 1.5, mask, allow_tf32=False)
    for o in outs:
        assert torch.all(o[1] == 0)
    grads = torch.autograd.grad(sum(o.sum() for o in outs), inputs)
    for name, g in zip(INPUT_NAMES, grads):
        assert torch.isfinite(g).all(), name


def test_bad_alpha_and_dtype_errors_name_the_fix():
    inputs = random_ipa_inputs(1, 4, ODD_DIMS, torch.float32, DEVICE)
    with pytest.raises(ValueError, match=r"alpha=.* must lie in \(1, 2\]"):
        entmax_ipa_attention(*inputs, 1.0)
    with pytest.raises(TypeError, match="q has dtype torch.float64"):
        entmax_ipa_attention(*[x.double() for x in inputs], 1.5)


def test_kept_block_lists_that_overflow_fall_back_to_the_range_and_stay_exact(monkeypatch):
    """The kept key blocks are listed per query block up to launch.KEEP_CAP (O(L) memory); a query block
    with more scans its range instead. Forced to overflow (a cap of 2, below the chain's kept blocks), the
    kernels give the same support count and still match float64."""
    from flashipa_kernels.entmax_ipa import launch

    torch.manual_seed(3)  # the gradient weights _errors draws: as test_skipped_blocks_leave_fp32_results_exact
    alpha = torch.tensor([1.5, 1.75], device=DEVICE)
    chain = _chain_inputs(4 * max(BLOCKS[:2]), ODD_DIMS, torch.float32, seed=1)
    listed = entmax_ipa_threshold_stats(*chain, alpha, allow_tf32=False, dense_mask=True)
    monkeypatch.setattr(launch, "KEEP_CAP", 2)
    capped = entmax_ipa_threshold_stats(*chain, alpha, allow_tf32=False, dense_mask=True)
    kept_per_row = listed["block_mask"].sum(-1)
    assert kept_per_row.max() > 2  # some query block overflows the cap
    assert capped["kept_fraction"] == listed["kept_fraction"]
    # the overflowed rows read as their whole range: a superset of the listed blocks
    assert bool((capped["block_mask"] >= listed["block_mask"]).all())
    errors = _errors(_chain_inputs(64, ODD_DIMS, torch.float32, seed=1), alpha, allow_tf32=False)
    assert max(errors.values()) <= 3e-5, errors
