"""Position-paired ("aligned") TM-score: our superposition search (flashipa_train.metrics.tm_score) against
biotite's `superimpose_without_outliers` + `tm_score`, on real chains of data/ and edited copies (Gaussian
noise, one half rotated as a domain, unrelated chains cropped to one length, a 13-residue piece).

The TM-score is the maximum over superpositions, so a method that finds a higher score is closer to the
right value; `dense search` runs our search with seeds from every fragment start (slow) as the reference.

    python scripts/bench_tm_score.py [--out docs/benchmarks]
"""

import argparse
import importlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import biotite
import biotite.structure as struc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashipa_train.metrics import as_backbone, backbone_to_atom_array, iter_backbones  # noqa: E402

tm = importlib.import_module(
    "flashipa_train.metrics.tm_score"
)  # the module (the package exports a function of that name)

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = ("5eil.pdb.gz", "7gsa.cif.gz", "1qys.pdb.gz", "2axd.bcif.gz", "1l2y.pdb.gz", "3zee.cif.gz", "1aki.pdb.gz")


def biotite_aligned_tm_score(reference, subject) -> float:
    """biotite: outlier-pruned least-squares superposition of the paired CAs, then its TM-score."""
    reference, subject = as_backbone(reference), as_backbone(subject)
    both = reference.ca_mask & subject.ca_mask
    fixed, mobile = (backbone_to_atom_array(b.atoms[both]) for b in (reference, subject))
    fixed, mobile = fixed[fixed.atom_name == "CA"], mobile[mobile.atom_name == "CA"]
    fitted, _, _ = struc.superimpose_without_outliers(fixed, mobile)
    pairs = np.arange(fixed.array_length())
    return float(struc.tm_score(fixed, fitted, pairs, pairs, reference.length))


def dense_search_tm_score(reference, subject) -> float:
    """Our search with a seed at every start of every fragment length (the reference value)."""
    saved = tm.SEED_STARTS_PER_FRAGMENT
    tm.SEED_STARTS_PER_FRAGMENT = 10**6
    try:
        return tm.aligned_tm_score(reference, subject)
    finally:
        tm.SEED_STARTS_PER_FRAGMENT = saved


def half_rotated(atoms: np.ndarray, angle: float = 0.8, shift: float = 5.0) -> np.ndarray:
    """The second half of the chain rotated about z through its CA centre and shifted: a domain motion."""
    moved, half = atoms.copy(), len(atoms) // 2
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    centre = moved[half:, 1].mean(axis=0)
    moved[half:] = (moved[half:] - centre) @ rotation.T + centre + shift
    return moved


def test_pairs(rng) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    chains = [b for name in FILES for b in iter_backbones(str(DATA / name))]
    pairs = []
    for chain in chains:
        for sigma in (0.5, 2.0, 4.0):
            pairs.append(
                (chain.name, f"noise {sigma} A", chain.atoms, chain.atoms + rng.normal(0, sigma, chain.atoms.shape))
            )
        pairs.append((chain.name, "half rotated", chain.atoms, half_rotated(chain.atoms)))
    for a, b in zip(chains[:-1], chains[1:]):
        length = min(a.length, b.length)
        pairs.append((f"{a.name} / {b.name}", "other chain", a.atoms[:length], b.atoms[:length]))
    piece = chains[0].atoms[:13]
    pairs.append((f"{chains[0].name}[:13]", "noise 1.0 A", piece, piece + rng.normal(0, 1.0, piece.shape)))
    return pairs


def timed(function, *args, repeats: int = 3) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function(*args)
        times.append((time.perf_counter() - start) * 1e3)
    return value, statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for tm_score.json and tm_score.md")
    args = parser.parse_args(argv)
    rows = []
    for name, edit, a, b in test_pairs(np.random.default_rng(0)):
        ours, ours_ms = timed(tm.aligned_tm_score, a, b)
        theirs, theirs_ms = timed(biotite_aligned_tm_score, a, b)
        rows.append(
            {
                "pair": name,
                "edit": edit,
                "length": len(a),
                "dense_search": dense_search_tm_score(a, b),
                "ours": ours,
                "biotite": theirs,
                "ours_ms": ours_ms,
                "biotite_ms": theirs_ms,
            }
        )
    lines = [
        "| pair | edit | L | dense search | ours | biotite | ours ms | biotite ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['pair']} | {r['edit']} | {r['length']} | {r['dense_search']:.4f} | {r['ours']:.4f} | "
        f"{r['biotite']:.4f} | {r['ours_ms']:.1f} | {r['biotite_ms']:.1f} |"
        for r in rows
    ]
    gap = {m: [r["dense_search"] - r[m] for r in rows] for m in ("ours", "biotite")}
    summary = {
        m: {
            "max_below_dense": max(g),
            "median_below_dense": statistics.median(g),
            "pairs_more_than_0.002_below": sum(x > 0.002 for x in g),
            "median_ms": statistics.median(r[f"{m}_ms"] for r in rows),
        }
        for m, g in gap.items()
    }
    stamp = {
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "biotite": biotite.__version__,
        "pairs": len(rows),
    }
    text = "\n".join(
        [
            "# Position-paired TM-score: our search vs biotite",
            "",
            f"{len(rows)} pairs from data/, CPU ({stamp['cpu']}), biotite {stamp['biotite']}, numpy {stamp['numpy']}; "
            "median of 3 timings per pair (`python scripts/bench_tm_score.py --out docs/benchmarks`). The TM-score "
            "is a maximum over superpositions: higher is closer to right; `dense search` is the reference.",
            "",
            "| method | pairs > 0.002 below dense | largest gap | median gap | median ms |",
            "|---|---|---|---|---|",
            *[
                f"| {m} | {s['pairs_more_than_0.002_below']} / {len(rows)} | {s['max_below_dense']:.4f} | "
                f"{s['median_below_dense']:.4f} | {s['median_ms']:.1f} |"
                for m, s in summary.items()
            ],
            "",
            *lines,
            "",
        ]
    )
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "tm_score.json").write_text(json.dumps({"stamp": stamp, "summary": summary, "rows": rows}, indent=1))
        (out / "tm_score.md").write_text(text)


if __name__ == "__main__":
    main()
