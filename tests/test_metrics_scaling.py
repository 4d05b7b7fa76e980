"""The clash and novelty code never builds an L x L array: a 20000-residue chain stays fast and small."""

import time
import tracemalloc

import numpy as np

from flashipa_train.metrics import as_backbone, clashes_per_100_residues, novelty

NUM_RES = 20_000


def random_walk_chain(num_res: int, seed: int) -> np.ndarray:
    """[L, 4, 3] chain whose CAs take 3.8 A steps in random directions (N, C, O placed on the CA)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(num_res, 3))  # [L, 3]
    steps *= 3.8 / np.linalg.norm(steps, axis=-1, keepdims=True)
    ca = np.cumsum(steps, axis=0)  # [L, 3]
    return np.repeat(ca[:, None], 4, axis=1)  # [L, 4, 3]


def test_clashes_of_a_20000_residue_chain_run_in_bounded_memory_and_time():
    backbone = as_backbone(random_walk_chain(NUM_RES, seed=0))
    tracemalloc.start()
    start = time.perf_counter()
    clashes = clashes_per_100_residues(backbone)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    l_by_l_bytes = NUM_RES * NUM_RES * 8
    assert peak < l_by_l_bytes / 20, f"peak {peak / 1e6:.0f} MB"  # an L x L float64 array is 3.2 GB
    assert seconds < 10.0
    assert clashes > 0.0  # a random walk crosses itself


def test_clashes_of_a_very_spread_out_sample_keep_the_cell_grid_small():
    # an untrained model can scatter residues over kilometres of space: the cell grid must not follow
    rng = np.random.default_rng(1)
    atoms = np.repeat(rng.uniform(-1e5, 1e5, size=(5_000, 1, 3)), 4, axis=1)  # [L, 4, 3]
    tracemalloc.start()
    assert clashes_per_100_residues(atoms) == 0.0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 100e6


def test_novelty_reads_the_reference_set_in_one_pass_from_a_generator():
    consumed = []

    def references():
        for index in range(6):
            consumed.append(index)
            yield as_backbone(random_walk_chain(60, seed=10 + index), name=f"ref{index}")

    rows = novelty([random_walk_chain(60, seed=10)], references(), chunk_size=4)
    assert consumed == list(range(6))
    assert rows[0]["novelty_nearest"] == "ref0" and rows[0]["novelty_max_tm"] > 0.99
