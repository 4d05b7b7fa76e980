"""Squared-distance errors of IPA's point term on a real 256-residue crop, per form of the computation.

    PYTHONPATH=. python scripts/point_term_precision.py [--structure data/7gsa.cif.gz] [--key-stride 8]

The crop: the first 256 residues of the structure's first protein chain, centred at its CA mean (as
the data pipeline centres crops), its N, CA, C and O atoms as the query and key points of one head
(float32, as the model's frames give them). For each pair (query residue i, key residue j) the error
is |d2 - d2_exact| with d2 = sum over the 4 points of the squared distance as the form computes it
(the per-row constant of the logits taken exact, since softmax ignores it), in A^2:

  kernel        this kernel, read back from its log-sum-exp (kernels/flash_ipa/point_probe.py), with
                bf16 / fp16 dots (points split hi + lo) and float32 dots (tf32 and exact; on a GPU)
  v5 kernel     the previous kernel's form, emulated: centred points rounded once to fp16
  one bf16 rounding of the centred points (emulated)
  sdpa backend  the concatenated features in bf16 (q_pts pw, k_pts, |k|^2), uncentred (emulated)

Writes docs/benchmarks/point_term_precision.{json,md}. Under Triton's interpreter (no GPU) the kernel
rows take about 10 s per 4 keys: --key-stride picks every n-th key residue (all queries).
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from flashipa_kernels.flash_ipa.point_probe import exact_squared_distances, kernel_squared_distances

PW = 0.05  # any weight: the errors are in squared point units


def crop_backbone(path, length):
    """[length, 4, 3] float32 backbone atoms, centred at the CA mean; a .pt path holds them already
    (the GPU image has no biotite: save the crop here with --save-crop)."""
    if path.endswith(".pt"):
        return torch.load(path)[:length]
    from flashipa_train.data.chain_features import chain_backbone, protein_chain_atoms
    from flashipa_train.data.structure_reader import parse_structure

    parsed = parse_structure(path, open(path, "rb").read())
    chain_id, atoms = protein_chain_atoms(parsed.atoms)[0]
    xyz = torch.tensor(chain_backbone(chain_id, atoms).atoms[:length], dtype=torch.float32)  # [L, 4, 3]
    return xyz - xyz[:, 1].mean(dim=0)


def emulated(q, k, keys, centre, round_q, round_k, norms_rounded):
    """d2 from rounded operands with exact products (the matrix units' fp32 accumulation)."""
    q64, k64 = q.double(), k.double()[keys]
    qr = round_q(PW * (q64 - centre)).double().flatten(1)  # [L, 3P]
    kr = round_k(k64 - centre).double()  # [K, P, 3]
    knorm = norms_rounded(kr, k64 - centre)  # [K]
    logits = qr @ kr.flatten(1).t() - 0.5 * PW * knorm[None]
    return (q64 - centre).square().sum(dim=(1, 2))[:, None] - 2.0 * logits / PW


def summary(err):
    return dict(median=err.median().item(), p90=err.quantile(0.9).item(), max=err.max().item())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structure", default="data/7gsa.cif.gz")
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--key-stride", type=int, default=1)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--save-crop", default=None, help="write the crop to this .pt file and stop")
    args = parser.parse_args(argv)
    if args.save_crop:
        torch.save(crop_backbone(args.structure, args.length), args.save_crop)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x = crop_backbone(args.structure, args.length)
    keys = torch.arange(0, x.shape[0], args.key_stride)
    exact = exact_squared_distances(x, x, keys)
    bf16 = lambda t: t.to(torch.bfloat16)  # noqa: E731
    fp16 = lambda t: t.to(torch.float16)  # noqa: E731
    rows = {}
    kernel_dtypes = [("bf16", torch.bfloat16, True), ("fp16", torch.float16, True)]
    if device == "cuda":
        kernel_dtypes += [("fp32 tf32", torch.float32, True), ("fp32 exact", torch.float32, False)]
    for name, dtype, tf32 in kernel_dtypes:
        seen = kernel_squared_distances(x.to(device), x.to(device), keys.to(device), PW, dtype, tf32)
        rows[f"kernel, {name} dots (points hi + lo)"] = summary((seen - exact).abs())
    centre = x.double()[:, :, :].mean(dim=(0, 1))
    from_rounded = lambda kr, k: kr.square().sum(dim=(1, 2))  # noqa: E731
    rows["v5 kernel: centred points rounded to fp16 (emulated)"] = summary(
        (emulated(x, x, keys, centre, fp16, fp16, from_rounded) - exact).abs()
    )
    rows["centred points rounded to bf16 once (emulated)"] = summary(
        (emulated(x, x, keys, centre, bf16, bf16, from_rounded) - exact).abs()
    )
    zero = torch.zeros(3, dtype=torch.float64)
    norm_bf16 = lambda kr, k: bf16(k.square().sum(dim=(1, 2))).double()  # noqa: E731
    pw_bf16 = bf16(torch.tensor(-0.5 * PW)).double().item() / (-0.5 * PW)  # |k|^2's weight in bf16
    sdpa = emulated(x, x, keys, zero, bf16, bf16, lambda kr, k: norm_bf16(kr, k) * pw_bf16)
    rows["sdpa backend: bf16 features, uncentred (emulated)"] = summary((sdpa - exact).abs())
    inner = keys < x.shape[0] - 1  # keys with a next residue
    neighbours = exact[keys[inner] + 1, torch.arange(len(keys))[inner]]
    stamp = dict(
        structure=args.structure,
        length=int(x.shape[0]),
        points="N, CA, C, O (summed)",
        pairs=int(exact.numel()),
        key_stride=args.key_stride,
        device=(torch.cuda.get_device_name() if device == "cuda" else "CPU, Triton interpreter"),
        torch=torch.__version__,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        neighbour_d2_median=neighbours.median().item(),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "point_term_precision.json").write_text(json.dumps(dict(stamp=stamp, rows=rows), indent=1))
    lines = [
        "# Point-term precision on a real crop",
        "",
        f"{stamp['structure']}, first {stamp['length']} residues of the first chain, centred at the CA "
        f"mean; points N, CA, C, O; {stamp['pairs']} query-key residue pairs (every "
        f"{args.key_stride}th key); {stamp['device']}, torch {stamp['torch']}, {stamp['date']}. Error of "
        "the summed squared distance over the 4 points, |d2 - d2_exact| in A^2 (neighbouring residues: "
        f"d2 about {stamp['neighbour_d2_median']:.0f} A^2). Written by scripts/point_term_precision.py.",
        "",
        "| form | median | 90th pct | max |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {v['median']:.3g} | {v['p90']:.3g} | {v['max']:.3g} |" for k, v in rows.items()]
    (out / "point_term_precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
