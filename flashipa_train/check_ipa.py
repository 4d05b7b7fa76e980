"""`flashipa-check-ipa`: run the reference IPA on real structures and check what the kernels rely on.

For the first protein chain of every structure file given (files or folders), it builds backbone
frames from N/CA/C, draws seeded random node features and rank-R pair factors, and reports in float64:
  - dense vs factorized IPA (`torch` and `sdpa` backends): relative difference of the outputs,
  - SE(3) invariance: relative change of the output under a random global rotation + translation,
  - the largest tensor the dense and the factorized (`torch`) paths create.
A quick installation check and a demonstration of the reference on real data.
"""

import argparse
import os
import sys
import time

import torch

from flashipa_kernels.backends import attention_core
from flashipa_kernels.reference import InvariantPointAttention, pair_bias_from_factors, pair_values_from_factors
from flashipa_train.data.preprocess import find_structure_files
from flashipa_train.geometry import frames_from_backbone, uniform_so3
from flashipa_train.largest_tensor import LargestTensor


def first_chain_backbone(path):
    """[L, 3, 3] N, CA, C coordinates (float64) of the first protein chain, residues with all three."""
    from flashipa_train.data.chain_features import chain_backbone, protein_chain_atoms
    from flashipa_train.data.structure_reader import parse_structure

    with open(path, "rb") as f:
        parsed = parse_structure(path, f.read())
    chains = protein_chain_atoms(parsed.atoms)
    if not chains:
        raise ValueError("no protein chain")
    backbone = chain_backbone(*chains[0])
    complete = backbone.atom_mask[:, :3].all(axis=1)
    return chains[0][0], torch.from_numpy(backbone.atoms[complete, :3]).double()


def relative_error(out, ref):
    return ((out - ref).norm() / ref.norm()).item()


def check_structure(backbone, rank=2, seed=0):
    """Dense/factorized agreement, invariance and largest tensors for one chain [L, 3, 3]."""
    g = torch.Generator().manual_seed(seed)
    L = backbone.shape[0]
    ipa = InvariantPointAttention(c_s=32, c_z=8, c_hidden=8, no_heads=4, no_qk_points=4, no_v_points=4).double()
    frames = frames_from_backbone(backbone[None, :, 0], backbone[None, :, 1], backbone[None, :, 2])
    s = torch.randn(1, L, 32, generator=g, dtype=torch.float64)  # [1, L, c_s]
    bias_q, bias_k = torch.randn(2, 1, L, 4, rank, generator=g, dtype=torch.float64)  # [1, L, H, R]
    pair_q, pair_k = torch.randn(2, 1, L, rank, 8, generator=g, dtype=torch.float64) / rank**0.5  # [1, L, R, c_z]
    factors = (bias_q, bias_k, pair_q, pair_k)

    def factorized(rots, trans, backend):
        return ipa.forward_factorized(s, rots, trans, *factors, core=attention_core(backend))

    with torch.no_grad(), LargestTensor() as dense_probe:
        z = pair_values_from_factors(pair_q, pair_k)  # [1, L, L, c_z]
        dense = ipa(s, z, frames.rots, frames.trans, pair_bias=pair_bias_from_factors(bias_q, bias_k))
    with torch.no_grad(), LargestTensor() as flash_probe:
        out = factorized(frames.rots, frames.trans, "torch")
    sdpa = factorized(frames.rots, frames.trans, "sdpa")
    rot = uniform_so3((), dtype=torch.float64, generator=g)  # [3, 3]
    shift = 100.0 * torch.randn(3, generator=g, dtype=torch.float64)
    moved = factorized(rot @ frames.rots, frames.trans @ rot.T + shift, "torch")
    return {
        "L": L,
        "dense_vs_torch": relative_error(out, dense),
        "dense_vs_sdpa": relative_error(sdpa, dense),
        "invariance": relative_error(moved, out),
        "largest_dense": dense_probe.numel,
        "largest_factorized": flash_probe.numel,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=["data"], help="structure files or folders (default: data/)")
    parser.add_argument("--max-files", type=int, default=8, help="check at most this many files")
    parser.add_argument("--max-length", type=int, default=400, help="skip chains longer than this (dense is O(L^2))")
    args = parser.parse_args(argv)

    header = (
        f"{'file':<28} {'chain':>5} {'L':>5} {'dense-torch':>11} {'dense-sdpa':>11} {'invariance':>11} "
        f"{'max dense':>10} {'max fact.':>10}"
    )
    print(header)
    worst, checked = 0.0, 0
    for path in find_structure_files(args.paths):
        if checked == args.max_files:
            break
        start = time.perf_counter()
        try:
            chain, backbone = first_chain_backbone(path)
        except Exception as error:  # a bad file is reported, never fatal
            print(f"{os.path.basename(path):<28} skipped: {error}")
            continue
        if backbone.shape[0] > args.max_length:
            print(
                f"{os.path.basename(path):<28} skipped: chain {chain} has {backbone.shape[0]} residues > --max-length"
            )
            continue
        r = check_structure(backbone)
        worst = max(worst, r["dense_vs_torch"], r["dense_vs_sdpa"], r["invariance"])
        checked += 1
        print(
            f"{os.path.basename(path):<28} {chain:>5} {r['L']:>5} {r['dense_vs_torch']:>11.1e} "
            f"{r['dense_vs_sdpa']:>11.1e} {r['invariance']:>11.1e} {r['largest_dense']:>10} "
            f"{r['largest_factorized']:>10}  ({time.perf_counter() - start:.1f} s)"
        )
    ok = checked > 0 and worst < 1e-10
    print(f"checked {checked} chains; worst relative difference {worst:.1e} (float64): {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
