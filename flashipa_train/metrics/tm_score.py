"""TM-scores between backbones (Zhang & Skolnick 2004) on CA atoms: diversity among samples, novelty against a set.

Two ways to pair residues:
  - "aligned": residue i of one backbone with residue i of the other (same length, e.g. samples of one
    length compared position by position). The superposition maximising the TM-score is searched from
    Kabsch fits of fragments, each refined on the residues within a distance cut-off. Kept over biotite's
    `superimpose_without_outliers` + `tm_score` (2.3x faster, but its least-squares fit misses the
    TM-maximising superposition: up to 0.48 low when a domain moves, 0.03-0.18 low on dissimilar pairs,
    i.e. on sample diversity; docs/benchmarks/tm_score.md).
  - "structural": sequence-independent pairing found by biotite's `superimpose_structural_homologs`
    (TM-align-like: 3Di structural alphabet alignment, then TM-score-based refinement); any lengths.
    Multi-chain backbones are aligned as one chain. One pair costs about 20-60 ms at L ~ 200.
"""

from __future__ import annotations

from collections.abc import Iterable

import biotite.structure as struc
import numpy as np

from flashipa_train.metrics.atom_array import backbone_to_atom_array
from flashipa_train.metrics.backbone_input import Backbone, as_backbone

TM_METHODS = ("structural", "aligned")
MAX_REFINE_ITERATIONS = 20
SEED_STARTS_PER_FRAGMENT = 8
MIN_SEED_LENGTH = 4
MIN_RESIDUES = 3  # fewer scored residues give NaN
# Cap on biotite's last refinement step: its default (no cap) never ends for pairs whose residue
# correspondences oscillate (e.g. 1ycr_A vs 1qys_A); the score is stable after a few iterations.
STRUCTURAL_MAX_ITERATIONS = 20


def tm_d0(length: int) -> float:
    """TM-score distance scale d0 (Angstrom) for a normalisation length; 0.5 A below 22 residues."""
    if length <= 21:
        return 0.5
    return max(0.5, 1.24 * (length - 15) ** (1.0 / 3.0) - 1.8)


def aligned_tm_score(reference, subject) -> float:
    """TM-score of `subject` against `reference` with residue i paired to residue i, normalised by L.

    Both backbones must have the same length L; only residues with both CAs modelled are scored.
    """
    reference, subject = as_backbone(reference), as_backbone(subject)
    if reference.length != subject.length:
        raise ValueError(
            f"aligned_tm_score: lengths differ ({reference.name or 'reference'}: {reference.length}, "
            f"{subject.name or 'subject'}: {subject.length}); use method='structural' for different lengths"
        )
    both = reference.ca_mask & subject.ca_mask  # [L]
    x = reference.atoms[both, 1]  # [M, 3]
    y = subject.atoms[both, 1]  # [M, 3]
    if x.shape[0] < MIN_RESIDUES:
        return float("nan")
    return _best_superposition_tm(x, y, reference.length)


def structural_tm_score(reference, subject, reference_length: str | int = "shorter") -> float:
    """TM-score after biotite's sequence-independent structural superposition of `subject` onto `reference`.

    `reference_length` is biotite's normalisation: "shorter", "longer", "reference" or a residue count.
    """
    fixed = _single_chain_ca_array(as_backbone(reference))
    mobile = _single_chain_ca_array(as_backbone(subject))
    if _residue_count(fixed) < MIN_RESIDUES or _residue_count(mobile) < MIN_RESIDUES:
        return float("nan")
    return _superposed_tm(fixed, mobile, reference_length)


def _superposed_tm(fixed: struc.AtomArray, mobile: struc.AtomArray, reference_length) -> float:
    """biotite's structural superposition and TM-score; NaN where it finds no residue pair to anchor the
    superposition on (it raises "No anchors found": e.g. a diverged sample spread over 100 A)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate (e.g. collapsed) samples
        try:
            superimposed, _, fixed_indices, mobile_indices = struc.superimpose_structural_homologs(
                fixed, mobile, max_iterations=STRUCTURAL_MAX_ITERATIONS, reference_length=reference_length
            )
        except ValueError as error:
            if "anchor" not in str(error):
                raise
            return float("nan")
    return float(struc.tm_score(fixed, superimposed, fixed_indices, mobile_indices, reference_length))


def tm_score(reference, subject, method: str = "structural") -> float:
    """TM-score by `method` ("structural" normalises by the shorter backbone, "aligned" by L)."""
    if method == "structural":
        return structural_tm_score(reference, subject)
    if method == "aligned":
        return aligned_tm_score(reference, subject)
    raise ValueError(f"tm_score: method={method!r}; expected one of {TM_METHODS}")


def pairwise_tm_scores(backbones: list, method: str = "structural") -> np.ndarray:
    """[N, N] TM-scores between all pairs (each pair computed once, the matrix mirrored), 1 on the diagonal."""
    backbones = [as_backbone(b) for b in backbones]
    num = len(backbones)
    scores = np.eye(num)
    for i in range(num):
        for j in range(i + 1, num):
            scores[i, j] = scores[j, i] = tm_score(backbones[i], backbones[j], method)
    return scores


def pairwise_tm_diversity(backbones: list, method: str = "structural") -> float:
    """Mean TM-score over distinct pairs of backbones: lower means a more diverse set; NaN for fewer than 2."""
    if len(backbones) < 2:
        return float("nan")
    scores = pairwise_tm_scores(backbones, method)[np.triu_indices(len(backbones), k=1)]
    scores = scores[np.isfinite(scores)]
    return float(scores.mean()) if scores.size else float("nan")


def diversity_by_length(backbones: list, method: str = "aligned") -> dict[int, float]:
    """`pairwise_tm_diversity` within each group of equal length, keyed by length."""
    groups: dict[int, list[Backbone]] = {}
    for backbone in map(as_backbone, backbones):
        groups.setdefault(backbone.length, []).append(backbone)
    return {length: pairwise_tm_diversity(group, method) for length, group in sorted(groups.items())}


def novelty(samples: list, reference_set: Iterable, chunk_size: int = 64) -> list[dict]:
    """Highest structural TM-score of every sample against a reference (training) set.

    The TM-score is normalised by the sample's length (how much of the sample some reference structure
    covers). `reference_set` is consumed lazily, `chunk_size` structures at a time, so a generator over a
    preprocessed directory never sits in memory whole. Returns, per sample,
    {"novelty_max_tm": float, "novelty_nearest": name (or position) of the best-matching reference}.
    """
    samples = [_single_chain_ca_array(as_backbone(s)) for s in samples]
    best = [{"novelty_max_tm": float("nan"), "novelty_nearest": ""} for _ in samples]
    chunk: list[tuple[str, struc.AtomArray]] = []
    for position, reference in enumerate(reference_set):
        reference = as_backbone(reference)
        chunk.append((reference.name or str(position), _single_chain_ca_array(reference)))
        if len(chunk) == chunk_size:
            _update_best(best, samples, chunk)
            chunk = []
    _update_best(best, samples, chunk)
    return best


def _update_best(best: list[dict], samples: list, chunk: list) -> None:
    for row, sample in zip(best, samples):
        if _residue_count(sample) < MIN_RESIDUES:
            continue
        for name, reference in chunk:
            if _residue_count(reference) < MIN_RESIDUES:
                continue
            score = _superposed_tm(sample, reference, "reference")
            if not np.isnan(score) and not score <= row["novelty_max_tm"]:  # also replaces the initial NaN
                row["novelty_max_tm"], row["novelty_nearest"] = score, name


def _single_chain_ca_array(backbone: Backbone) -> struc.AtomArray:
    """The backbone's residues with N, CA and C modelled, as one chain 'A' (biotite needs equal chain counts)."""
    complete = backbone.atom_mask[:, :3].all(axis=1)  # [L]
    single = Backbone(
        atoms=backbone.atoms[complete],
        atom_mask=backbone.atom_mask[complete],
        chain_ids=np.full(int(complete.sum()), "A"),
        residue_index=np.arange(int(complete.sum())),
        name=backbone.name,
    )
    return backbone_to_atom_array(single)


def _residue_count(array: struc.AtomArray) -> int:
    return int(np.count_nonzero(array.atom_name == "CA"))


def _kabsch(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation [3, 3] and translation [3] moving points y [M, 3] onto x [M, 3] with least squares."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    covariance = (y - y_mean).T @ (x - x_mean)  # [3, 3]
    u, _, vt = np.linalg.svd(covariance)
    reflection = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, reflection]) @ vt  # applied as y @ rotation
    return rotation, x_mean - y_mean @ rotation


def _best_superposition_tm(x: np.ndarray, y: np.ndarray, norm_length: int) -> float:
    """Max over seeds of the TM-score of y [M, 3] against paired x [M, 3] (TM-score program's search, reduced)."""
    num = x.shape[0]
    d0 = tm_d0(norm_length)
    cutoff = min(max(d0, 4.5), 8.0)  # residues closer than this drive the next superposition
    best = 0.0
    fragment = num
    while True:
        starts = np.unique(
            np.linspace(0, num - fragment, min(SEED_STARTS_PER_FRAGMENT, num - fragment + 1)).astype(int)
        )
        for start in starts:
            selected = np.zeros(num, dtype=bool)
            selected[start : start + fragment] = True
            for _ in range(MAX_REFINE_ITERATIONS):
                rotation, translation = _kabsch(x[selected], y[selected])
                distance = np.linalg.norm(y @ rotation + translation - x, axis=-1)  # [M]
                best = max(best, float(np.sum(1.0 / (1.0 + (distance / d0) ** 2)) / norm_length))
                next_selected = distance < cutoff
                if next_selected.sum() < 3:
                    next_selected = np.zeros(num, dtype=bool)
                    next_selected[np.argsort(distance)[:3]] = True
                if np.array_equal(next_selected, selected):
                    break
                selected = next_selected
        if fragment <= MIN_SEED_LENGTH:
            break
        fragment = max(MIN_SEED_LENGTH, fragment // 2)
    return best
