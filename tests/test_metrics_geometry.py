"""Local geometry, clashes, compactness and P-SEA metrics on real chains from data/ and on edited copies."""

from pathlib import Path

import numpy as np
import pytest
import torch

from flashipa_train.metrics import (
    Backbone,
    as_backbone,
    backbone_metrics,
    backbone_to_atom_array,
    bond_deviations,
    ca_ca_distance_stats,
    ca_clash_pairs,
    clashes_per_100_residues,
    designability,
    expected_radius_of_gyration,
    iter_backbones,
    metrics_of_training_set,
    rg_ratio,
    sse_fractions,
    sse_labels,
    summarize,
)

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
REAL_FILES = ("5eil.pdb.gz", "7gsa.cif.gz", "1qys.pdb.gz", "2axd.bcif.gz", "1f2n.bcif.gz")


@pytest.fixture(scope="module")
def real_chains() -> list[Backbone]:
    return [b for name in REAL_FILES for b in iter_backbones(str(DATA_DIR / name))]


def test_real_chains_have_ca_ca_of_3_80_and_no_clashes(real_chains):
    assert len(real_chains) >= 7
    means = []
    for chain in real_chains:
        mean, std = ca_ca_distance_stats(chain)
        means.append(mean)
        # 7gsa's deposited model is uniformly stretched by about 1.6 % (its median CA-CA is 3.86 A)
        assert abs(mean - 3.80) < (0.07 if chain.name == "7gsa" else 0.05), chain.name
        assert std < 0.15, chain.name
        assert clashes_per_100_residues(chain) == 0.0, chain.name
    assert abs(np.mean(means) - 3.80) < 0.05


def test_bond_deviations_are_small_on_real_chains_and_large_on_a_perturbed_copy(real_chains):
    rng = np.random.default_rng(0)
    for chain in real_chains:
        real = bond_deviations(chain)
        perturbed = bond_deviations(
            Backbone(
                chain.atoms + rng.normal(scale=0.3, size=chain.atoms.shape),
                chain.atom_mask,
                chain.chain_ids,
                chain.residue_index,
            )
        )
        for key, value in real.items():
            small, large = (0.03, 0.15) if key.startswith("bond") else (5.0, 10.0)
            assert value < small, (chain.name, key, value)
            assert perturbed[key] > large, (chain.name, key, perturbed[key])


def test_consecutive_pairs_stop_at_chain_ids_and_residue_index_gaps(real_chains):
    first, second = real_chains[0], real_chains[1]
    joined = np.concatenate([first.atoms, second.atoms])  # [L1 + L2, 4, 3]
    as_one_chain = as_backbone(joined)
    as_two_chains = as_backbone(joined, chain_ids=[first.chain_ids[0]] * first.length + ["Z"] * second.length)
    gap_in_numbering = as_backbone(
        joined, residue_index=np.concatenate([np.arange(first.length), np.arange(second.length) + first.length + 5])
    )
    assert ca_ca_distance_stats(as_one_chain)[1] > 0.5  # the jump between the chains counts
    for split in (as_two_chains, gap_in_numbering):
        mean, std = ca_ca_distance_stats(split)
        assert abs(mean - 3.80) < 0.05 and std < 0.1
        assert bond_deviations(split)["bond_dev_C-N+"] < 0.03


def test_clash_pairs_match_a_brute_force_count_and_skip_sequence_neighbours():
    rng = np.random.default_rng(1)
    atoms = rng.uniform(0.0, 25.0, size=(400, 4, 3))  # dense random cloud: many close CA pairs
    chain_ids = np.repeat(["A", "B"], 200)
    backbone = as_backbone(atoms, chain_ids=chain_ids)
    ca = atoms[:, 1]
    distance = np.linalg.norm(ca[:, None] - ca[None], axis=-1)  # [L, L], fine at L = 400
    i, j = np.triu_indices(400, k=1)
    near = distance[i, j] < 3.0
    separated = (chain_ids[i] != chain_ids[j]) | (j - i >= 2)
    expected = {(int(a), int(b)) for a, b in zip(i[near & separated], j[near & separated])}
    found = {tuple(p) for p in ca_clash_pairs(backbone).tolist()}
    assert found == expected and len(expected) > 50
    # residues 10 and 11 on top of each other are sequence neighbours, not a clash
    straight = np.zeros((30, 4, 3))
    straight[:, :, 0] = np.arange(30)[:, None] * 3.8
    straight[11, 1] = straight[10, 1] + 0.5
    assert clashes_per_100_residues(straight) == 0.0
    straight[20, 1] = straight[5, 1] + [0.0, 2.0, 0.0]
    assert clashes_per_100_residues(straight) == pytest.approx(100.0 / 30)


def test_masked_residues_are_left_out_of_every_metric(real_chains):
    chain = real_chains[0]
    atoms = chain.atoms.copy()
    atoms[5:9] = atoms[30]  # garbage coordinates on residues 5..8, masked below
    mask = np.ones(chain.length, dtype=bool)
    mask[5:9] = False
    masked = as_backbone(atoms, mask=mask, residue_index=chain.residue_index)
    assert clashes_per_100_residues(masked) == 0.0
    assert abs(ca_ca_distance_stats(masked)[0] - 3.80) < 0.05
    assert backbone_to_atom_array(masked).array_length() == 4 * (chain.length - 4)


def test_radius_of_gyration_ratio_is_near_one_for_a_globular_chain_and_large_for_a_straight_one(real_chains):
    globular = next(c for c in real_chains if c.name.startswith("7gsa"))
    assert 0.8 < rg_ratio(globular) < 1.2
    straight = np.zeros((100, 4, 3))
    straight[:, :, 0] = np.arange(100)[:, None] * 3.8
    assert rg_ratio(straight) > 4.0
    assert expected_radius_of_gyration(100) == pytest.approx(2.2 * 100**0.38)


def test_pseA_fractions_sum_to_one_and_find_the_helices(real_chains):
    for chain in real_chains:
        fractions = sse_fractions(sse_labels(chain))
        assert sum(fractions.values()) == pytest.approx(1.0)
    helical = next(c for c in real_chains if c.name.startswith("5eil"))  # a helix bundle
    assert sse_fractions(sse_labels(helical))["helix_fraction"] > 0.5


def test_one_sse_fractions_for_preprocessing_and_metrics_nan_without_labels():
    from flashipa_train.data import chain_features

    assert chain_features.sse_fractions is sse_fractions
    assert all(np.isnan(v) for v in sse_fractions(np.array(["", ""])).values())
    assert sse_fractions(np.array(["a", "a", "c", ""])) == {
        "helix_fraction": 2 / 3,
        "strand_fraction": 0.0,
        "coil_fraction": 1 / 3,
    }


def test_inputs_may_be_torch_tensors_or_example_dicts(real_chains):
    chain = real_chains[0]
    from_numpy = backbone_metrics(chain)
    from_torch = backbone_metrics(torch.from_numpy(chain.atoms).float())
    from_dict = backbone_metrics(
        {"atoms": chain.atoms, "atom_mask": chain.atom_mask, "residue_index": chain.residue_index}
    )
    for key in ("ca_ca_mean", "clashes_per_100", "radius_of_gyration", "helix_fraction"):
        assert from_torch[key] == pytest.approx(from_numpy[key], abs=1e-4)
        assert from_dict[key] == pytest.approx(from_numpy[key])
    with pytest.raises(ValueError, match=r"\[L, 4, 3\]"):
        as_backbone(np.zeros((10, 3, 3)))


def test_training_set_metrics_from_a_preprocessed_dir_match_the_structure_files(tmp_path):
    from flashipa_train.data.preprocess import preprocess

    files = [str(DATA_DIR / "5eil.pdb.gz"), str(DATA_DIR / "2axd.bcif.gz")]
    preprocess(files, str(tmp_path / "pre"), progress=False)
    from_dir = metrics_of_training_set(str(tmp_path / "pre"))
    assert sorted(r["name"] for r in from_dir) == ["2axd_S", "5eil_A", "5eil_B", "5eil_C"]
    from_files = metrics_of_training_set([b for f in files for b in iter_backbones(f)])
    assert sorted(r["name"] for r in from_files) == ["2axd", "5eil_A", "5eil_B", "5eil_C"]  # one-chain file: its stem
    for key in ("length", "ca_ca_mean", "radius_of_gyration", "helix_fraction"):
        assert sorted(r[key] for r in from_dir) == pytest.approx(sorted(r[key] for r in from_files), abs=1e-5)
    summary = summarize(from_dir)
    assert summary["count"] == 4 and summary["clashes_per_100"] == 0.0
    assert summary["ca_ca_mean"] == pytest.approx(np.mean([r["ca_ca_mean"] for r in from_dir]))


def test_designability_is_a_documented_hook_not_a_dependency(real_chains):
    with pytest.raises(NotImplementedError, match="ProteinMPNN"):
        designability(real_chains[0])


@pytest.mark.parametrize("atoms", [np.zeros((0, 4, 3)), np.full((30, 4, 3), np.nan)], ids=["empty", "all_nan"])
def test_empty_or_diverged_backbones_give_nan_metrics_not_errors(atoms):
    row = backbone_metrics(atoms)
    assert np.isnan(row["ca_ca_mean"]) and np.isnan(row["clashes_per_100"]) and np.isnan(row["helix_fraction"])
