"""One small FlashIPA forward + backward on the GPU, stage by stage, for compute-sanitizer runs.

    python3 scripts/device_memcheck.py [--dtype bf16|fp32] [--dims anchor|trunk|narrow_lo|bias_tile] [--length L]
        [--batch B] [--repeat N] [--configs dq=128,32,8,2 ...] [--check]

--configs replaces a kernel's autotune candidates by one (BLOCK_M, BLOCK_N, num_warps, num_stages)
config, to check one config alone (also one that launch.candidate_configs would drop). Without it, and with
FLASHIPA_AUTOTUNE=1, every candidate config of launch.py runs (the autotuner times each). --repeat runs the
backward N times: the Triton 3.6 fault of the earlier kernels came and went between runs
(docs/kernel_notes.md); without compute-sanitizer and with a long sequence (--length 8192) the script is a
stress test (scripts/device_kernel.sh runs both).
--dims narrow_lo: the tiny dims of test_bias_wider_than_points (bias columns wider than the points' lo parts,
PBW 32 > PLW 16); the first batch row is padded from 40 residues (the test's mask at --length 45 --batch 2).
--dims bias_tile: the tiny dims of test_bias_in_its_own_tile (the bias in a tile of its own), padded the same
way. The other dims keep launch.BIAS_TILE as set (default on; FLASHIPA_BIAS_TILE=0: one tile).
--check: relative errors of outputs and input gradients against the float64 reference.
"""

import argparse

import torch
import triton

from flashipa_kernels.flash_ipa import flash_ipa_attention, launch
from flashipa_kernels.flash_ipa.benchmark import ANCHOR, TRUNK
from flashipa_kernels.flash_ipa.testing import (
    BIAS_TILE_DIMS,
    NARROW_LO_DIMS,
    random_ipa_inputs,
    reference_outputs_and_grads,
    relative_error,
)

AUTOTUNED = {"fwd": launch._fwd, "dk": launch._dk, "dv": launch._dv, "dq": launch._dq}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DIMS = {
    "anchor": ANCHOR,
    "trunk": TRUNK,
    "narrow_lo": NARROW_LO_DIMS,
    "bias_tile": BIAS_TILE_DIMS,
}


def use_configs(specs):
    """Make each named kernel's only candidate one config, from strings like "dq=128,32,8,2" (also one that
    launch.candidate_configs would drop: a lone config is kept). Clears the autotune cache."""
    for spec in specs:
        name, values = spec.split("=")
        bm, bn, warps, stages = (int(x) for x in values.split(","))
        config = triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages)
        AUTOTUNED[name].configs = [config]
        AUTOTUNED[name].cache.clear()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dims", default="anchor", choices=list(DIMS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--configs", nargs="*", default=[])
    parser.add_argument("--check", action="store_true", help="errors against the float64 reference")
    args = parser.parse_args()
    use_configs(args.configs)
    launch.BIAS_TILE = launch.BIAS_TILE or args.dims == "bias_tile"
    tiny = args.dims in ("narrow_lo", "bias_tile")
    L = args.length
    inputs = [x.requires_grad_() for x in random_ipa_inputs(args.batch, L, DIMS[args.dims], DTYPES[args.dtype], "cuda")]
    mask = torch.ones(args.batch, L, dtype=torch.bool, device="cuda")
    mask[0, (40 if tiny else 3 * L // 4) :] = False
    outs = flash_ipa_attention(*inputs, mask=mask)
    torch.cuda.synchronize()
    print("forward ok", flush=True)
    grad_outputs = [torch.randn_like(o) for o in outs]
    for _ in range(args.repeat):
        torch.autograd.backward(outs, grad_outputs, retain_graph=True)
    torch.cuda.synchronize()
    print("backward ok", flush=True)
    if args.check:
        grads = torch.autograd.grad(outs, inputs, grad_outputs)
        ref_outs, ref_grads = reference_outputs_and_grads(inputs, grad_outputs, mask)
        errors = [relative_error(a, b) for a, b in zip([*outs, *grads], [*ref_outs, *ref_grads])]
        print("relative errors (o, o_pts, o_pair, then the ten input gradients):", " ".join(f"{e:.1e}" for e in errors))


if __name__ == "__main__":
    main()
