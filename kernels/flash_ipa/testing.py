"""Random IPA attention inputs and float64 comparisons, shared by the kernel tests and the benchmark."""

from dataclasses import dataclass

import torch

from flashipa_kernels.reference.factorized_attention import tiled_ipa_attention

INPUT_NAMES = ("q", "k", "v", "q_pts", "k_pts", "v_pts", "bias_q", "bias_k", "pair_k", "point_weights")


@dataclass(frozen=True)
class IPADims:
    """Per-head feature dims of IPA attention."""

    heads: int
    c: int  # scalar query/key channels
    c_v: int  # scalar value channels
    p_q: int  # query/key points
    p_v: int  # value points
    r_bias: int  # pair-bias factor rank
    r_pair: int  # pair-value factor rank
    c_z: int  # pair-value channels


# tiny odd dims whose bias rank makes the point-bias operand wider than the points' lo parts (PBW 32 > PLW 16):
# the narrow-lo path of the kernels (tests, scripts/device_memcheck.py)
NARROW_LO_DIMS = IPADims(heads=2, c=5, c_v=7, p_q=3, p_v=5, r_bias=20, r_pair=2, c_z=6)
# tiny odd dims whose bias takes a tile of its own (9 point + 24 bias columns: 16 + 32 instead of 64), as the
# trunk's (27 + 42: 32 + 64 instead of 128); launch.point_bias_widths
BIAS_TILE_DIMS = IPADims(heads=2, c=5, c_v=7, p_q=3, p_v=5, r_bias=24, r_pair=2, c_z=6)
# tiny odd dims of the entmax kernel tests (tests/test_entmax_kernel.py, scripts/entmax_gpu_diagnose.py)
ENTMAX_ODD_DIMS = IPADims(heads=2, c=5, c_v=7, p_q=3, p_v=5, r_bias=2, r_pair=3, c_z=6)


def chain_inputs(L, dims, spacing=0.38, seed=0):
    """float64 CPU inputs whose points sit on a straight chain, `spacing` apart per residue (0.38: CA-CA in
    nm, the trunk's unit), batch 1: far residues get zero entmax weight, so whole key blocks are skipped."""
    gen = torch.Generator().manual_seed(seed)
    inputs = random_ipa_inputs(1, L, dims, torch.float64, point_scale=1.0, generator=gen)
    along = torch.zeros(1, L, 1, 1, 3, dtype=torch.float64)
    along[..., 0] = spacing * torch.arange(L, dtype=torch.float64)[None, :, None, None]
    for i in (3, 4, 5):  # q_pts, k_pts, v_pts
        inputs[i] = inputs[i] + along
    return inputs


def random_ipa_inputs(B, L, dims, dtype=torch.float32, device="cpu", point_scale=3.0, point_offset=0.0, generator=None):
    """Fresh random inputs of `tiled_ipa_attention`, in the order of INPUT_NAMES.

    Points are N(0, point_scale^2) per coordinate plus `point_offset` (Angstrom) on every coordinate,
    to place the whole structure far from the origin."""
    H = dims.heads

    def randn(*shape, scale=1.0, offset=0.0):
        x = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale + offset
        return x.to(device=device, dtype=dtype)

    point_weights = (torch.rand(H, generator=generator, dtype=torch.float64) * 0.3 + 0.05).to(device, dtype)
    return [
        randn(B, L, H, dims.c),  # q
        randn(B, L, H, dims.c),  # k
        randn(B, L, H, dims.c_v),  # v
        randn(B, L, H, dims.p_q, 3, scale=point_scale, offset=point_offset),  # q_pts
        randn(B, L, H, dims.p_q, 3, scale=point_scale, offset=point_offset),  # k_pts
        randn(B, L, H, dims.p_v, 3, scale=point_scale, offset=point_offset),  # v_pts
        randn(B, L, H, dims.r_bias),  # bias_q
        randn(B, L, H, dims.r_bias),  # bias_k
        randn(B, L, dims.r_pair, dims.c_z),  # pair_k
        point_weights,
    ]


def relative_error(out, ref):
    """||out - ref|| / ||ref|| in float64."""
    ref = ref.detach().to("cpu", torch.float64)
    return ((out.detach().to("cpu", torch.float64) - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def reference_outputs_and_grads(inputs, grad_outputs, mask=None):
    """Outputs and input gradients of the float64 torch reference on float64 copies of `inputs`."""
    x64 = [x.detach().to("cpu", torch.float64).requires_grad_() for x in inputs]
    m = None if mask is None else mask.cpu()
    outs = tiled_ipa_attention(*x64, mask=m)
    grads = torch.autograd.grad(outs, x64, [g.to("cpu", torch.float64) for g in grad_outputs])
    return [o.detach() for o in outs], list(grads)
