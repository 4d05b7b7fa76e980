"""IPA layers and pair factors: the factorized layer equals the dense one on the pair tensors its factors
describe, the pair-factor construction is exact, and the O(L k) neighbour search is right."""

import math

import pytest
import torch

from flashipa_kernels.reference import pair_bias_from_factors, pair_values_from_factors
from flashipa_train.geometry import Rigid, uniform_so3
from flashipa_train.model import DenseIPA, FactorizedIPA, PairFactorEmbedder, PairFactors
from flashipa_train.model.neighbours import knn_indices, window_indices
from flashipa_train.model.relpos_bias import ContentRelposBias

B, L, C_S, H, R, C_PV = 2, 13, 24, 3, 2, 5


def relative_error(out, ref):
    return (torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref)).item()


def random_frames(g):
    rots = uniform_so3((B, L), dtype=torch.float64, generator=g)
    return Rigid(rots, torch.randn(B, L, 3, generator=g, dtype=torch.float64) * 1.5)


@pytest.mark.parametrize("backend", ["torch", "sdpa"])
def test_factorized_ipa_equals_dense_ipa_on_the_pair_tensors_of_its_factors(backend):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    flash = FactorizedIPA(C_S, C_PV, c_hidden=6, num_heads=H, num_qk_points=4, num_v_points=3).double()
    dense = DenseIPA(C_S, C_PV, c_hidden=6, num_heads=H, num_qk_points=4, num_v_points=3).double()
    with torch.no_grad():
        for p in flash.parameters():
            p.normal_(0.0, 0.3, generator=g)
    missing, unexpected = dense.load_state_dict(flash.state_dict(), strict=False)
    assert set(missing) == {"linear_b.weight", "linear_b.bias"} and not unexpected

    s = torch.randn(B, L, C_S, generator=g, dtype=torch.float64)
    rigids = random_frames(g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[1, 9:] = False
    factors = PairFactors(
        bias_q=torch.randn(B, L, H, R + 3, generator=g, dtype=torch.float64),
        bias_k=torch.randn(B, L, H, R + 3, generator=g, dtype=torch.float64),
        pair_q=torch.randn(B, L, R, C_PV, generator=g, dtype=torch.float64),
        pair_k=torch.randn(B, L, R, C_PV, generator=g, dtype=torch.float64),
    )
    out_flash = flash(s, rigids, factors, mask, backend=backend)
    out_dense = dense(
        s,
        rigids,
        pair_values_from_factors(factors.pair_q, factors.pair_k),
        mask,
        pair_bias=pair_bias_from_factors(factors.bias_q, factors.bias_k),
    )
    assert relative_error(out_flash, out_dense) < 1e-12
    assert out_flash[1, 9:].abs().max() == 0


def test_pair_factors_give_learned_plus_relative_position_plus_same_chain_bias_exactly():
    g = torch.Generator().manual_seed(1)
    embedder = PairFactorEmbedder(C_S, H, R, C_PV, num_relpos_frequencies=5, max_chains=4).double()
    with torch.no_grad():
        for p in embedder.parameters():
            p.normal_(0.0, 0.5, generator=g)
    s0 = torch.randn(B, L, C_S, generator=g, dtype=torch.float64)
    residue_index = torch.sort(torch.randint(-20, 200, (B, L), generator=g), dim=-1).values
    chain_index = torch.randint(0, 6, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    factors = embedder(s0, residue_index, chain_index, mask)
    assert factors.bias_q.shape == (B, L, H, embedder.bias_rank) == factors.bias_k.shape

    learned_q, learned_k = embedder.linear_bias(embedder.layer_norm(s0)).view(B, L, 2, H, R).unbind(2)
    learned = torch.einsum("bihr,bjhr->bijh", learned_q, learned_k)
    # [B, L, L, F]
    diff = (residue_index[:, :, None] - residue_index[:, None, :]).double()[
        ..., None
    ] * embedder.relpos_frequencies.double()
    relpos = torch.einsum("bijf,hf->bijh", torch.cos(diff), embedder.relpos_cos_weight) + torch.einsum(
        "bijf,hf->bijh", torch.sin(diff), embedder.relpos_sin_weight
    )
    same_chain = (chain_index[:, :, None] % 4 == chain_index[:, None, :] % 4).double()[
        ..., None
    ] * embedder.same_chain_weight
    expected = learned + relpos + same_chain  # [B, L, L, H]
    assert relative_error(pair_bias_from_factors(factors.bias_q, factors.bias_k), expected) < 1e-12
    periods = 2 * math.pi / embedder.relpos_frequencies
    assert periods.min().item() == pytest.approx(2.0) and periods.max().item() == pytest.approx(1000.0)


def test_content_relpos_factors_give_a_query_weighted_relative_position_bias_exactly():
    g = torch.Generator().manual_seed(3)
    embedder = PairFactorEmbedder(C_S, H, R, C_PV, num_relpos_frequencies=5).double()
    content = ContentRelposBias(C_S, H, num_frequencies=5).double()
    with torch.no_grad():
        for p in content.parameters():
            p.normal_(0.0, 0.5, generator=g)
    s = torch.randn(B, L, C_S, generator=g, dtype=torch.float64)
    residue_index = torch.sort(torch.randint(-20, 200, (B, L), generator=g), dim=-1).values
    mask = torch.ones(B, L, dtype=torch.bool)
    bias_q, bias_k = content(s, *embedder.index_sinusoids(residue_index, mask, torch.float64))
    assert bias_q.shape == bias_k.shape == (B, L, H, 10)

    # [B, L, H, F] each: the weights read from the query's s_i
    a, c = content.linear(content.layer_norm(s)).view(B, L, 2, H, 5).unbind(2)
    # [B, L, L, F]
    diff = (residue_index[:, :, None] - residue_index[:, None, :]).double()[
        ..., None
    ] * embedder.relpos_frequencies.double()
    expected = torch.einsum("bijf,bihf->bijh", torch.cos(diff), a) + torch.einsum("bijf,bihf->bijh", torch.sin(diff), c)
    assert relative_error(pair_bias_from_factors(bias_q, bias_k), expected) < 1e-12


def test_knn_indices_match_brute_force_and_skip_padding_and_self():
    g = torch.Generator().manual_seed(2)
    pos = torch.randn(B, 300, 3, generator=g, dtype=torch.float64) * 10
    mask = torch.ones(B, 300, dtype=torch.bool)
    mask[1, 250:] = False
    idx, valid = knn_indices(pos, mask, k=7, chunk=64)
    d2 = torch.cdist(pos, pos).square()
    d2 = d2.masked_fill(~mask[:, None, :] | torch.eye(300, dtype=torch.bool), float("inf"))
    ref = d2.topk(7, dim=-1, largest=False).indices
    assert torch.equal(idx[0], ref[0]) and torch.equal(idx[1, :250], ref[1, :250])
    assert valid[0].all() and valid[1, :250].all() and not valid[1, 250:].any()


def test_knn_with_fewer_residues_than_k_marks_the_rest_invalid():
    pos = torch.randn(1, 4, 3)
    idx, valid = knn_indices(pos, torch.tensor([[True, True, True, False]]), k=6)
    assert idx.shape == (1, 4, 6) and valid[0, :3].sum(-1).tolist() == [2, 2, 2] and not valid[0, 3].any()


def test_window_indices_are_sequence_neighbours_inside_the_chain():
    mask = torch.tensor([[True] * 5 + [False] * 2])
    idx, valid = window_indices(mask, k=4)
    assert idx[0, 2].tolist() == [1, 3, 0, 4] and valid[0, 2].all()
    assert valid[0, 0].tolist() == [False, True, False, True]
    assert valid[0, 4].tolist() == [True, False, True, False]
    assert not valid[0, 5:].any()
