"""TM-scores, diversity and novelty on real chains from data/ and on rigidly moved or noisy copies."""

from pathlib import Path

import numpy as np
import pytest

from flashipa_train.metrics import (
    Backbone,
    aligned_tm_score,
    iter_backbones,
    novelty,
    pairwise_tm_diversity,
    pairwise_tm_scores,
    sample_metrics,
    structural_tm_score,
    summarize,
)
from flashipa_train.metrics.tm_score import tm_d0

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def chains() -> list[Backbone]:
    # 5eil: three copies of one helical chain (158-159 residues); 7gsa and 1qys: unrelated folds
    return [b for name in ("5eil.pdb.gz", "7gsa.cif.gz", "1qys.pdb.gz") for b in iter_backbones(str(DATA_DIR / name))]


def moved(backbone: Backbone, rng: np.random.Generator, noise: float = 0.0) -> Backbone:
    """A copy rotated by a random proper rotation, translated, and optionally with Gaussian noise (A)."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # [3, 3] proper rotation
    atoms = backbone.atoms @ q.T + rng.normal(scale=20.0, size=3) + rng.normal(scale=noise, size=backbone.atoms.shape)
    return Backbone(atoms, backbone.atom_mask, backbone.chain_ids, backbone.residue_index, backbone.name + "_moved")


def test_tm_score_of_a_structure_with_itself_and_a_rotated_copy_is_one(chains):
    rng = np.random.default_rng(0)
    for chain in chains[:4]:
        copy = moved(chain, rng)
        for score in (
            aligned_tm_score(chain, chain),
            aligned_tm_score(chain, copy),
            structural_tm_score(chain, chain),
            structural_tm_score(chain, copy),
        ):
            assert score == pytest.approx(1.0, abs=1e-4), chain.name


def test_noisy_copies_score_between_zero_and_one_and_both_methods_agree(chains):
    rng = np.random.default_rng(1)
    chain = chains[0]
    previous = 1.0
    for noise in (0.5, 1.5, 3.0):
        copy = moved(chain, rng, noise)
        aligned, structural = aligned_tm_score(chain, copy), structural_tm_score(chain, copy)
        assert 0.1 < aligned < previous
        assert structural == pytest.approx(aligned, abs=0.05)
        previous = aligned


def test_aligned_tm_score_needs_equal_lengths(chains):
    with pytest.raises(ValueError, match="structural"):
        aligned_tm_score(chains[0], chains[-1])


def test_d0_follows_the_tm_score_formula():
    assert tm_d0(100) == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8)
    assert tm_d0(10) == 0.5


def test_diversity_is_low_for_copies_of_one_chain_and_high_for_unrelated_folds(chains):
    copies = chains[:3]  # the three 5eil chains
    unrelated = [chains[0], chains[3], chains[4]]  # 5eil, 7gsa, 1qys
    assert pairwise_tm_diversity(copies) > 0.95
    assert pairwise_tm_diversity(unrelated) < 0.45
    scores = pairwise_tm_scores(unrelated)
    assert np.allclose(scores, scores.T) and np.allclose(np.diag(scores), 1.0)
    assert np.isnan(pairwise_tm_diversity(chains[:1]))


def test_novelty_finds_the_training_chain_a_sample_copies_whatever_the_chunk_size(chains):
    rng = np.random.default_rng(2)
    training = [chains[0], chains[3], chains[4]]
    samples = [moved(chains[3], rng, 0.3), moved(chains[4], rng, 0.3)]
    results = [novelty(samples, iter(training), chunk_size=size) for size in (1, 2, 64)]
    assert results[0] == results[1] == results[2]
    assert [r["novelty_nearest"] for r in results[0]] == [chains[3].name, chains[4].name]
    assert all(r["novelty_max_tm"] > 0.9 for r in results[0])
    unseen = novelty([chains[4]], iter(training[:2]))[0]
    assert unseen["novelty_max_tm"] < 0.5


def test_sample_metrics_with_a_reference_set_and_their_summary(chains):
    rows = sample_metrics(chains[3:5], reference_set=iter(chains[:3]))
    assert all("novelty_max_tm" in row and row["clashes_per_100"] == 0.0 for row in rows)
    summary = summarize(rows, backbones=chains[3:5])
    assert summary["count"] == 2
    assert summary["novelty_max_tm"] == pytest.approx(np.mean([r["novelty_max_tm"] for r in rows]))
    assert 0.0 < summary["diversity_mean_tm"] < 0.5


def test_structural_tm_score_ends_for_a_pair_whose_correspondences_oscillate():
    # biotite's default (unbounded) refinement never finishes for this pair; ours is capped
    first = next(iter_backbones(str(DATA_DIR / "1YCR.pdb.gz")))
    second = next(iter_backbones(str(DATA_DIR / "1qys.pdb.gz")))
    assert 0.1 < structural_tm_score(first, second) < 0.5


def test_samples_too_dissimilar_for_an_anchor_score_nan_and_are_skipped_by_novelty(chains):
    """biotite raises "No anchors found" for, e.g., diverged samples spread over 100 A: a NaN TM-score
    (like other degenerate samples), never an error, and novelty keeps the best real score."""
    rng = np.random.default_rng(3)
    spread = [
        np.repeat(rng.normal(scale=30.0, size=(32, 1, 3)), 4, axis=1) + rng.normal(scale=0.5, size=(32, 4, 3))
        for _ in range(2)
    ]  # [L, 4, 3] backbones of scattered residues
    assert np.isnan(structural_tm_score(spread[0], spread[1]))
    assert np.isnan(pairwise_tm_diversity(spread))
    row = novelty([chains[3]], iter([chains[4], spread[1]]))[0]  # the NaN comes after a real score
    assert row["novelty_nearest"] == chains[4].name and 0.0 < row["novelty_max_tm"] < 0.5


def test_aligned_tm_score_finds_the_superposition_of_a_moved_domain(chains):
    """The TM-score's maximum sits on one domain when the other moved: a least-squares fit of all residues
    (biotite's superimpose_without_outliers, 0.52 on this chain) misses it, our fragment search does not."""
    chain = next(c for c in chains if c.length > 60)
    moved, half = chain.atoms.copy(), chain.length // 2
    angle = 0.8
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    centre = moved[half:, 1].mean(axis=0)
    moved[half:] = (moved[half:] - centre) @ rotation.T + centre + 5.0
    assert aligned_tm_score(chain, moved) > 0.45  # about half the residues superposed exactly
