"""Where the alpha-entmax kernels go wrong on a GPU: the failing test cases of tests/test_entmax_kernel.py
run stage by stage (threshold pass: tau, passes, block mask; forward outputs) against the interpreter's
values of the same tiles and against the float64 dense reference.

    # on the CPU, the interpreter's values at the GPU's tiles:
    TRITON_INTERPRET=1 ENTMAX_IPA_BLOCK=64,32,8 python scripts/entmax_gpu_diagnose.py --save ref.pt
    # on the GPU, per tile setting (ENTMAX_IPA_BLOCK is read at import: one process each):
    ENTMAX_IPA_BLOCK=64,32,4 python scripts/entmax_gpu_diagnose.py --compare ref.pt
Prints one line per case and stage: relative errors and the count of differing block-mask entries.
"""

import argparse
import os

import torch

from flashipa_kernels.entmax_ipa import dense_entmax_ipa_attention, entmax_ipa_attention, entmax_ipa_threshold_stats
from flashipa_kernels.flash_ipa.testing import IPADims, random_ipa_inputs, relative_error

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ODD_DIMS = IPADims(heads=2, c=5, c_v=7, p_q=3, p_v=5, r_bias=2, r_pair=3, c_z=6)


def cases():
    """(name, inputs on the CPU in float64, mask or None, alpha, dtype, allow_tf32) of the failing tests."""
    torch.manual_seed(0)
    B, L = 2, 37
    inputs = random_ipa_inputs(B, L, ODD_DIMS, torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 29:] = False
    yield "padding_mask_fp32", inputs, mask, torch.tensor([1.5, 2.0]), torch.float32, False
    yield "no_mask_fp32", inputs, None, torch.tensor([1.5, 2.0]), torch.float32, False
    yield "alpha_1.5_fp32", inputs, None, torch.tensor([1.5, 1.5]), torch.float32, False
    gen = torch.Generator().manual_seed(1)
    chain = random_ipa_inputs(1, 64, ODD_DIMS, torch.float64, point_scale=1.0, generator=gen)
    along = torch.zeros(1, 64, 1, 1, 3, dtype=torch.float64)
    along[..., 0] = 0.38 * torch.arange(64, dtype=torch.float64)[None, :, None, None]
    for i in (3, 4, 5):
        chain[i] = chain[i] + along
    yield "chain64_fp32", chain, None, torch.tensor([1.5, 1.75]), torch.float32, False


def run(inputs, mask, alpha, dtype, allow_tf32):
    x = [t.to(DEVICE, dtype) for t in inputs]
    m = None if mask is None else mask.to(DEVICE)
    a = alpha.to(DEVICE)
    stats = entmax_ipa_threshold_stats(*x, a, m, allow_tf32=allow_tf32)
    with torch.no_grad():
        outs = entmax_ipa_attention(*x, a, m, allow_tf32=allow_tf32)
    return dict(
        tau=stats["tau"].cpu(),
        passes=stats["passes"].cpu(),
        block_mask=stats["block_mask"].cpu(),
        outs=[o.cpu() for o in outs],
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--save")
    parser.add_argument("--compare")
    args = parser.parse_args()
    saved = {} if args.save else torch.load(args.compare) if args.compare else {}
    blocks = os.environ.get("ENTMAX_IPA_BLOCK", "default")
    results = {}
    for name, inputs, mask, alpha, dtype, tf32 in cases():
        got = run(inputs, mask, alpha, dtype, tf32)
        results[name] = got
        ref = dense_entmax_ipa_attention(*inputs, alpha.double(), mask)
        line = f"{DEVICE} blocks {blocks} {name}: out vs float64 " + " ".join(
            f"{relative_error(o, r):.1e}" for o, r in zip(got["outs"], ref)
        )
        if name in saved and saved[name]["block_mask"].shape != got["block_mask"].shape:  # other tiles
            s = saved[name]
            finite = torch.isfinite(s["tau"]) & torch.isfinite(got["tau"])
            line += f"; vs interpreter: tau {relative_error(got['tau'][finite], s['tau'][finite]):.1e}"
        elif name in saved:
            s = saved[name]
            finite = torch.isfinite(s["tau"]) & torch.isfinite(got["tau"])
            line += (
                f"; vs interpreter: tau {relative_error(got['tau'][finite], s['tau'][finite]):.1e}"
                f" (inf differ {(torch.isfinite(s['tau']) != torch.isfinite(got['tau'])).sum().item()})"
                f", passes max {got['passes'].max().item()} vs {s['passes'].max().item()}"
                f", block mask differs in {(got['block_mask'] != s['block_mask']).sum().item()}"
                f" of {s['block_mask'].numel()}"
                f" (kept {got['block_mask'].sum().item()} vs {s['block_mask'].sum().item()})"
                f", outs " + " ".join(f"{relative_error(o, r):.1e}" for o, r in zip(got["outs"], s["outs"]))
            )
        print(line, flush=True)
    if args.save:
        torch.save(results, args.save)


if __name__ == "__main__":
    main()
