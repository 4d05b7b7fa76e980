"""FlashIPA Triton kernel vs the float64 factorized reference (Triton's interpreter on CPU).

Runs on CUDA instead when a GPU is present. Shapes are small and dims odd on purpose: every
feature dim of the kernel is padded in registers only.
"""

import pytest
import torch

from flashipa_kernels.backends import ipa_attention_core
from flashipa_kernels.flash_ipa import flash_ipa_attention
from flashipa_kernels.flash_ipa.testing import (
    BIAS_TILE_DIMS,
    INPUT_NAMES,
    NARROW_LO_DIMS,
    IPADims,
    random_ipa_inputs,
    reference_outputs_and_grads,
    relative_error,
)
from flashipa_kernels.reference import tiled_ipa_attention

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ODD_DIMS = IPADims(heads=3, c=5, c_v=7, p_q=3, p_v=5, r_bias=2, r_pair=3, c_z=6)
OUTPUT_NAMES = ("o", "o_pts", "o_pair")


def _padded_mask(B, L, lengths):
    mask = torch.zeros(B, L, dtype=torch.bool, device=DEVICE)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
    return mask


def _assert_matches_reference(inputs, mask, tol, **kernel_kwargs):
    """Outputs and all ten input gradients of the kernel within `tol` of the float64 reference."""
    inputs = [x.detach().requires_grad_() for x in inputs]
    outs = flash_ipa_attention(*inputs, mask=mask, **kernel_kwargs)
    grad_outputs = [torch.randn_like(o, dtype=torch.float32).to(o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, inputs, grad_outputs)
    ref_outs, ref_grads = reference_outputs_and_grads(inputs, grad_outputs, mask)
    errors = {n: relative_error(a, b) for n, a, b in zip(OUTPUT_NAMES, outs, ref_outs)}
    errors.update({"d" + n: relative_error(a, b) for n, a, b in zip(INPUT_NAMES, grads, ref_grads)})
    bad = {n: e for n, e in errors.items() if not e <= tol}  # `not <=` also catches NaN
    assert not bad, f"relative errors above {tol}: {bad}"


def test_fp32_exact_mode_matches_float64_reference_with_padding_mask():
    torch.manual_seed(0)
    B, L = 2, 37
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.float32, DEVICE)
    _assert_matches_reference(inputs, _padded_mask(B, L, [L, 29]), 1e-5, allow_tf32=False)


def test_fp32_matches_reference_without_mask_at_longer_length():
    torch.manual_seed(1)
    dims = IPADims(heads=2, c=16, c_v=16, p_q=4, p_v=8, r_bias=2, r_pair=2, c_z=8)
    inputs = random_ipa_inputs(1, 128, dims, torch.float32, DEVICE)
    _assert_matches_reference(inputs, None, 1e-5, allow_tf32=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_matches_float64_reference(dtype):
    torch.manual_seed(2)
    B, L = 2, 45
    inputs = random_ipa_inputs(B, L, ODD_DIMS, dtype, DEVICE)
    _assert_matches_reference(inputs, _padded_mask(B, L, [40, L]), 1e-2)


@pytest.mark.parametrize(
    "dtype, tol, tf32", [(torch.float32, 1e-5, False), (torch.bfloat16, 1e-2, True), (torch.float16, 1e-2, True)]
)
def test_bias_wider_than_points_matches_float64_reference(dtype, tol, tf32):
    """A bias rank that makes the point-bias operand wider than the points' lo parts (content_relpos's
    rank 42: PBW 128, PLW 32; here 9 + 20 columns: PBW 32, PLW 16) takes the narrow lo dots."""
    torch.manual_seed(13)
    B, L = 2, 45
    inputs = random_ipa_inputs(B, L, NARROW_LO_DIMS, dtype, DEVICE)
    _assert_matches_reference(inputs, _padded_mask(B, L, [40, L]), tol, allow_tf32=tf32)


@pytest.mark.parametrize(
    "dtype, tol, tf32", [(torch.float32, 1e-5, False), (torch.bfloat16, 1e-2, True), (torch.float16, 1e-2, True)]
)
def test_bias_in_its_own_tile_matches_float64_reference(dtype, tol, tf32, monkeypatch):
    """A bias rank whose columns fit narrower in a tile of their own (the trunk's layout: 32 point + 64 bias
    columns instead of 128; here 16 + 32 instead of 64) gives the same outputs and gradients."""
    from flashipa_kernels.flash_ipa import launch

    monkeypatch.setattr(launch, "BIAS_TILE", True)
    assert launch.point_bias_widths(9, 24) == (16, 16, 32)
    assert launch.point_bias_widths(27, 42) == (32, 32, 64)  # the trunk
    assert launch.point_bias_widths(24, 2) == (32, 32, 0)  # the anchor: one tile
    torch.manual_seed(14)
    B, L = 2, 45
    inputs = random_ipa_inputs(B, L, BIAS_TILE_DIMS, dtype, DEVICE)
    q, _, v, q_pts, _, v_pts, bias_q, _, pair_k, _ = inputs
    assert launch.dims(q, v, q_pts, v_pts, bias_q, pair_k)["BW"] == 32
    _assert_matches_reference(inputs, _padded_mask(B, L, [40, L]), tol, allow_tf32=tf32)


def test_bf16_points_500_angstrom_from_origin_keep_precision():
    """The point term cancels |k|^2 against 2 q.k; per-sequence centring keeps it exact far out."""
    torch.manual_seed(3)
    B, L = 1, 48
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.bfloat16, DEVICE, point_scale=3.0, point_offset=500.0)
    _assert_matches_reference(inputs, None, 1e-2)
    # the danger is real: concatenated bf16 features (|k|^2 rounded in bf16) lose the logits there
    naive = tiled_ipa_attention(*[x.cpu() for x in inputs], tile=64)
    exact = tiled_ipa_attention(*[x.cpu().double() for x in inputs])
    assert relative_error(naive[0], exact[0]) > 0.1


def test_varlen_packed_sequences_match_reference_per_sequence():
    torch.manual_seed(4)
    lengths = [17, 40, 5]
    total = sum(lengths)
    packed = random_ipa_inputs(1, total, ODD_DIMS, torch.float32, DEVICE)
    packed = [x.requires_grad_() for x in packed]
    cu_seqlens = torch.tensor([0, 17, 57, 62], dtype=torch.int32, device=DEVICE)
    outs = flash_ipa_attention(*packed, cu_seqlens=cu_seqlens, allow_tf32=False)
    grad_outputs = [torch.randn_like(o) for o in outs]
    grads = torch.autograd.grad(outs, packed, grad_outputs)
    starts = [0, 17, 57]
    for start, n in zip(starts, lengths):
        rows = slice(start, start + n)
        per_seq = [x[:, rows] if x.dim() > 1 else x for x in packed]
        ref_outs, ref_grads = reference_outputs_and_grads(per_seq, [g[:, rows] for g in grad_outputs])
        for name, a, b in zip(OUTPUT_NAMES, outs, ref_outs):
            assert relative_error(a[:, rows], b) <= 1e-5, (name, start)
        for name, a, b in zip(INPUT_NAMES, grads, ref_grads):
            if name != "point_weights":  # shared by all sequences: checked below
                assert relative_error(a[:, rows], b) <= 1e-5, (name, start)
    # point_weights gradient sums over sequences
    total_dpw = sum(
        reference_outputs_and_grads(
            [x[:, s : s + n] if x.dim() > 1 else x for x in packed], [g[:, s : s + n] for g in grad_outputs]
        )[1][-1]
        for s, n in zip(starts, lengths)
    )
    assert relative_error(grads[-1], total_dpw) <= 1e-5


def test_sequence_without_real_residues_outputs_zero_and_finite_gradients():
    torch.manual_seed(5)
    B, L = 2, 20
    inputs = [x.requires_grad_() for x in random_ipa_inputs(B, L, ODD_DIMS, torch.float32, DEVICE)]
    mask = _padded_mask(B, L, [L, 0])
    outs = flash_ipa_attention(*inputs, mask=mask, allow_tf32=False)
    for o in outs:
        assert torch.all(o[1] == 0)
    grads = torch.autograd.grad(sum(o.sum() for o in outs), inputs)
    for name, g in zip(INPUT_NAMES, grads):
        assert torch.isfinite(g).all(), name
        if name not in ("pair_k", "point_weights"):
            assert torch.all(g[1] == 0), name


def test_value_dims_over_512_and_many_heads():
    torch.manual_seed(6)
    dims = IPADims(heads=5, c=24, c_v=448, p_q=8, p_v=12, r_bias=2, r_pair=2, c_z=32)  # 448 + 36 + 64 = 548
    inputs = random_ipa_inputs(1, 24, dims, torch.float32, DEVICE)
    _assert_matches_reference(inputs, None, 1e-5, allow_tf32=False)


def test_triton_backend_calls_the_kernel():
    torch.manual_seed(7)
    inputs = random_ipa_inputs(1, 19, ODD_DIMS, torch.float32, DEVICE)
    outs = ipa_attention_core(*inputs, backend="triton")
    refs = tiled_ipa_attention(*[x.double() for x in inputs])
    for a, b in zip(outs, refs):
        assert relative_error(a, b) <= 5e-3  # default allows tf32 on GPU


def test_torch_compile_fullgraph_traces_forward_and_backward():
    torch.manual_seed(8)
    B, L = 1, 21
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.float32, DEVICE)
    mask = _padded_mask(B, L, [17])

    def loss(*xs):
        o, o_pts, o_pair = flash_ipa_attention(*xs, mask=mask, allow_tf32=False)
        return o.square().sum() + o_pts.sum() + o_pair.pow(3).sum()

    eager_in = [x.clone().requires_grad_() for x in inputs]
    compiled_in = [x.clone().requires_grad_() for x in inputs]
    eager = loss(*eager_in)
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")(*compiled_in)
    torch.testing.assert_close(compiled, eager)
    for a, b in zip(torch.autograd.grad(compiled, compiled_in), torch.autograd.grad(eager, eager_in)):
        torch.testing.assert_close(a, b)


def test_unsupported_dtype_error_names_the_input():
    inputs = random_ipa_inputs(1, 8, ODD_DIMS, torch.float64)
    with pytest.raises(TypeError, match="q has dtype torch.float64"):
        flash_ipa_attention(*inputs)


def test_custom_op_passes_torch_library_opcheck():
    """Schema, fake (meta) implementation and autograd registration agree with the real kernel."""
    from flashipa_kernels.flash_ipa import op

    torch.manual_seed(9)
    B, L = 1, 16
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.float32, DEVICE)
    tokens = [x.reshape(B * L, *x.shape[2:]).contiguous() if x.dim() > 1 else x for x in inputs]
    tokens = [x.requires_grad_() for x in tokens]
    key_mask = torch.ones(B * L, dtype=torch.uint8, device=DEVICE)
    cu_seqlens = torch.tensor([0, L], dtype=torch.int32, device=DEVICE)
    torch.library.opcheck(
        op.attention_fwd,
        (*tokens, key_mask, cu_seqlens, L, False),
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )


def test_sequence_centres_are_mean_real_key_points_per_sequence():
    from flashipa_kernels.flash_ipa.launch import sequence_centres

    torch.manual_seed(10)
    k_pts = torch.randn(9, 2, 3, 3, dtype=torch.float64) + 500.0  # [T, H, P_q, 3]
    key_mask = torch.tensor([1, 1, 0, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    cu_seqlens = torch.tensor([0, 3, 7, 9], dtype=torch.int32)
    centres = sequence_centres(k_pts, key_mask, cu_seqlens, max_seqlen=4)  # varlen: prefix sums
    expected = [k_pts[[0, 1]].mean(dim=(0, 1, 2)), k_pts[3:7].mean(dim=(0, 1, 2)), torch.zeros(3)]
    torch.testing.assert_close(centres, torch.stack(expected).float())
    # a padded batch of three sequences of 3 (the reshape path, no prefix sums)
    centres = sequence_centres(k_pts, key_mask, torch.tensor([0, 3, 6, 9], dtype=torch.int32), max_seqlen=3)
    expected = [k_pts[[0, 1]].mean(dim=(0, 1, 2)), k_pts[[3, 4, 5]].mean(dim=(0, 1, 2)), k_pts[6].mean(dim=(0, 1))]
    torch.testing.assert_close(centres, torch.stack(expected).float())


def test_mixed_input_dtypes_as_autocast_leaves_them():
    """bf16 q next to float32 k, pair_k and points (bf16-mixed training): dots run in q's dtype, each
    output and gradient keeps its input's dtype."""
    torch.manual_seed(11)
    inputs = random_ipa_inputs(1, 33, ODD_DIMS, torch.float32, DEVICE)
    inputs[0] = inputs[0].to(torch.bfloat16)  # q
    inputs[2] = inputs[2].to(torch.bfloat16)  # v
    inputs = [x.requires_grad_() for x in inputs]
    outs = flash_ipa_attention(*inputs)
    assert [o.dtype for o in outs] == [torch.bfloat16, torch.float32, torch.float32]
    grads = torch.autograd.grad(sum(o.float().sum() for o in outs), inputs)
    assert [g.dtype for g in grads] == [x.dtype for x in inputs]
    refs = tiled_ipa_attention(*[x.detach().double() for x in inputs])
    for a, b in zip(outs, refs):
        assert relative_error(a, b) <= 1e-2


def test_fp32_point_weight_gradient_keeps_precision_with_eight_points():
    """d point_weights sums L^2 terms whose query and key parts nearly cancel row by row; with 8 points
    per head a split of the two parts over rows and columns lost a digit (2e-5 at L = 512)."""
    torch.manual_seed(12)
    dims = IPADims(heads=2, c=16, c_v=16, p_q=8, p_v=4, r_bias=2, r_pair=1, c_z=8)
    inputs = random_ipa_inputs(1, 256, dims, torch.float32, DEVICE)
    _assert_matches_reference(inputs, None, 1e-5, allow_tf32=False)


def _crop_backbone(path, chain_index=0, length=256):
    """[length, 4, 3] float32 N, CA, C, O of a chain from data/, read with the project's reader and
    centred at its CA mean, as the data pipeline centres crops."""
    pytest.importorskip("biotite", reason="the structure reader needs biotite (not on the GPU image)")
    from flashipa_train.data.chain_features import chain_backbone, protein_chain_atoms
    from flashipa_train.data.structure_reader import parse_structure

    parsed = parse_structure(path, open(path, "rb").read())
    chain_id, atoms = protein_chain_atoms(parsed.atoms)[chain_index]
    xyz = torch.tensor(chain_backbone(chain_id, atoms).atoms[:length], dtype=torch.float32)
    return xyz - xyz[:, 1].mean(dim=0)


def test_bf16_point_term_keeps_squared_distances_on_a_256_residue_crop():
    """The kernel's own point logits, read back from its log-sum-exp (point_probe), give squared
    distances between backbone atoms of a real 256-residue crop within 0.02 A^2 (median) of the exact
    ones with bf16 dots. One bf16 (or fp16) rounding of the centred points gave 0.2 A^2 (v5 kernel:
    0.21 median, 1.9 max on these pairs), the bf16 features of the sdpa backend about 2 A^2."""
    from flashipa_kernels.flash_ipa.point_probe import exact_squared_distances, kernel_squared_distances

    backbone = _crop_backbone("data/7gsa.cif.gz").to(DEVICE)  # [256, 4, 3] A
    keys = torch.arange(0, 256, 64, device=DEVICE)  # 4 keys x 256 queries (interpreter time)
    seen = kernel_squared_distances(backbone, backbone, keys, 0.05, torch.bfloat16)
    errors = (seen - exact_squared_distances(backbone, backbone, keys)).abs()
    assert errors.median() < 0.02, f"median {errors.median():.3g} A^2, max {errors.max():.3g} A^2"
    assert errors.max() < 0.2


def test_shared_memory_estimate_tracks_ptxas_and_keeps_the_trunk_on_8_warps():
    """launch.shared_bytes against ptxas's figures for sm_90 (Triton 3.6, bf16, docs/kernel_notes.md v4 and
    v6): at most 1 KB above, never below; at the trunk's dims (content_relpos, the bias in its own tile) the
    8-warp dK, dV and dQ configs fit 227 KB, and C_v = 448 in float32 (266 KB in the 64-row fallback on the
    H200) leaves only the 32-row one."""
    from flashipa_kernels.flash_ipa import launch
    from flashipa_kernels.flash_ipa.resource_report import DIMS, TRUNK_DIMS

    ptxas = {
        ("trunk", "dk", 32, 128, 2): 196864,
        ("trunk", "dk", 32, 128, 3): 229888,
        ("trunk", "dv", 32, 128, 3): 164096,
        ("trunk", "dq", 128, 32, 2): 196736,
        ("trunk", "dq", 128, 32, 3): 229632,
        ("trunk", "fwd", 128, 32, 3): 164096,
        ("trunk_one_tile", "dk", 32, 128, 2): 221440,
        ("trunk_one_tile", "dv", 32, 128, 3): 192768,
        ("trunk_one_tile", "dq", 128, 32, 2): 221312,
        ("trunk_one_tile", "dq", 64, 64, 2): 221440,
        ("anchor", "dv", 32, 128, 2): 106624,
    }
    for (dims, kernel, bm, bn, stages), shared in ptxas.items():
        assert 0 <= launch.shared_bytes(kernel, bm, bn, stages, DIMS[dims], True, 2) - shared <= 1024
    limit = launch.SM90_SHARED_BYTES
    assert launch.shared_bytes("dk", 32, 128, 2, TRUNK_DIMS, True, 2) <= limit
    assert launch.shared_bytes("dk", 64, 128, 2, TRUNK_DIMS, True, 2) > limit
    wide = dict(DIMS["anchor"], CV=448, CV_PAD=512)
    assert launch.shared_bytes("dk", 32, 64, 1, wide, False, 4) > limit
    assert launch.shared_bytes("dk", 32, 32, 1, wide, False, 4) <= limit


def test_narrow_lo_operands_drop_the_three_stage_forward_with_64_key_tiles():
    """The 8-warp (128, 64, 3) forward read shared memory out of bounds on the H200 (Triton 3.6) when the
    bias columns make PBW wider than the points' lo parts (PLW); the pruner drops it at such dims, keeps
    the 32-key tiles (memcheck-clean there) and leaves every other kernel and dims alone."""
    import triton

    from flashipa_kernels.flash_ipa import launch
    from flashipa_kernels.flash_ipa.resource_report import ANCHOR_DIMS

    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=8, num_stages=s)
        for bm, bn, s in [(128, 64, 3), (128, 32, 2), (128, 32, 3)]
    ]
    # the dims of test_bias_wider_than_points (c 5, 3 points, bias rank 20): PBW 32, PLW 16
    q, _, v, q_pts, _, v_pts, bias_q, _, pair_k, _ = random_ipa_inputs(1, 4, NARROW_LO_DIMS)
    narrow = launch.dims(q, v, q_pts, v_pts, bias_q, pair_k)
    assert (narrow["PBW"], narrow["PLW"]) == (32, 16)
    limit = launch.SM90_SHARED_BYTES

    def kept(kernel, d, split):
        return [
            (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_stages)
            for c in launch.candidate_configs(kernel, configs, dict(d, SPLIT=split), 2, limit)
        ]

    assert kept("fwd", narrow, True) == [(128, 32, 2), (128, 32, 3)]
    assert kept("fwd", narrow, False) == [(128, 64, 3), (128, 32, 2), (128, 32, 3)]  # exact fp32: no lo operands
    assert kept("fwd", ANCHOR_DIMS, True) == [(128, 64, 3), (128, 32, 2), (128, 32, 3)]  # PLW == PBW
    assert kept("dq", narrow, True)[0] == (128, 64, 3)
    bias_tile = dict(ANCHOR_DIMS, P3=9, RB=24, PBW=16, PLW=16, BW=32)
    assert kept("fwd", bias_tile, True) == [(128, 32, 2), (128, 32, 3)]
