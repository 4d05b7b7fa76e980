"""Spatially sparse IPA: cell-list neighbour lists, the Triton kernels over them (interpreter on CPU)
against the float64 reference, and the IPA-level function against exact IPA attention."""

import pytest
import torch

from flashipa_kernels.flash_ipa.testing import IPADims, random_ipa_inputs, relative_error
from flashipa_kernels.reference import tiled_ipa_attention
from flashipa_kernels.spatial_ipa.attention import neighbour_attention
from flashipa_kernels.spatial_ipa.ipa import spatial_ipa_attention
from flashipa_kernels.spatial_ipa.reference import neighbour_attention_reference
from flashipa_train.model.cell_list import knn_from_cell_list, spatial_neighbour_lists
from flashipa_train.model.neighbours import knn_indices

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ODD_DIMS = IPADims(heads=3, c=5, c_v=7, p_q=3, p_v=5, r_bias=2, r_pair=3, c_z=6)


def _chain(B, L, seed=0):
    """Random-walk CA positions (nm, 0.38 nm steps) and a padded mask."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.randn(B, L, 3, generator=g, dtype=torch.float64)
    pos = 0.38 * torch.cumsum(steps / steps.norm(dim=-1, keepdim=True), dim=1)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[-1, L - L // 5 :] = False
    return pos, mask


def test_cell_list_finds_the_k_nearest_within_the_radius_like_brute_force():
    B, L, k, radius = 2, 120, 10, 1.0
    pos, mask = _chain(B, L)
    idx, dist, complete = knn_from_cell_list(pos, mask, k, radius)
    ref, valid = knn_indices(pos, mask, k)
    ref_tok = ref + (torch.arange(B) * L)[:, None, None]
    d_ref = torch.linalg.vector_norm(pos.reshape(-1, 3)[ref_tok.reshape(-1, k)] - pos.reshape(-1, 3)[:, None], dim=-1)
    assert complete.all()
    for t in torch.nonzero(mask.reshape(-1)).flatten().tolist():
        inside = valid.reshape(-1, k)[t] & (d_ref[t] <= radius)
        assert set(idx[t][idx[t] >= 0].tolist()) == set(ref_tok.reshape(-1, k)[t][inside].tolist())
    assert (idx.reshape(B, L, k)[~mask] == -1).all()


def test_neighbour_lists_hold_self_knn_and_window_once_and_stay_in_chain():
    B, L = 1, 40
    pos, _ = _chain(B, L)
    mask = torch.ones(B, L, dtype=torch.bool)
    chain = (torch.arange(L) >= 20).long()[None]
    lists = spatial_neighbour_lists(pos, mask, torch.arange(L)[None], chain, k=6, window=3, cell_size=0.8)
    for i, row in enumerate(lists.index.tolist()):
        keys = [j for j in row if j >= 0]
        assert keys[0] == i and len(keys) == len(set(keys))
        window = {j for j in range(i - 3, i + 4) if 0 <= j < L and chain[0, j] == chain[0, i]}
        assert window <= set(keys)


def test_capped_cells_give_local_lists_and_report_incomplete():
    pos = torch.randn(1, 300, 3, dtype=torch.float64) * 0.2  # noise-like: far denser than a protein
    mask = torch.ones(1, 300, dtype=torch.bool)
    idx, dist, complete = knn_from_cell_list(pos, mask, 8, cell_size=0.5, max_per_cell=16)
    found = idx >= 0
    assert not complete.all() and found.all(-1).float().mean() > 0.9 and (dist[found] <= 0.5).all()


def _random_lists(T, K, g):
    nbr = torch.randint(-1, T, (T, K), generator=g, dtype=torch.int32)
    nbr[2] = -1  # an empty list: zero output, no gradient
    return nbr


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_kernel_forward_and_backward_match_float64_reference(dtype, tol):
    g = torch.Generator().manual_seed(0)
    T, H, DS, P3, DV, K = 29, 3, 7, 9, 11, 21  # odd dims and a list longer than one key block
    qs, ks, v = (torch.randn(T, H, d, generator=g).to(DEVICE, dtype) for d in (DS, DS, DV))
    qp, kp = (torch.randn(T, H, P3, generator=g).to(DEVICE) for _ in range(2))
    pw = (torch.rand(H, generator=g) + 0.1).to(DEVICE)
    nbr = _random_lists(T, K, g).to(DEVICE)
    inputs = [x.requires_grad_() for x in (qs, ks, qp, kp, pw, v)]
    o, lse = neighbour_attention(*inputs, nbr)
    go, glse = torch.randn(o.shape, generator=g).to(DEVICE), torch.randn(lse.shape, generator=g).to(DEVICE)
    finite = torch.isfinite(lse)
    loss = (o.float() * go).sum() + (torch.where(finite, lse, 0.0) * glse).sum()
    grads = torch.autograd.grad(loss, inputs)

    x64 = [x.detach().cpu().double().requires_grad_() for x in inputs]
    o_ref, lse_ref = neighbour_attention_reference(*x64, nbr.cpu())
    loss_ref = (o_ref * go.cpu().double()).sum() + (torch.where(finite.cpu(), lse_ref, 0.0) * glse.cpu().double()).sum()
    grads_ref = torch.autograd.grad(loss_ref, x64)
    assert (finite.cpu() == torch.isfinite(lse_ref)).all() and (o[2] == 0).all()
    errors = {
        "o": relative_error(o, o_ref),
        "lse": relative_error(torch.where(finite, lse, 0.0), torch.where(finite.cpu(), lse_ref, 0.0)),
    }
    errors.update(
        {"d" + n: relative_error(a, b) for n, a, b in zip(("qs", "ks", "qp", "kp", "pw", "v"), grads, grads_ref)}
    )
    bad = {n: e for n, e in errors.items() if not e <= tol}
    assert not bad, f"relative errors above {tol}: {bad}"


def test_kernel_rejects_float64_and_int64_lists_with_the_fix():
    x = torch.zeros(2, 1, 3)
    with pytest.raises(TypeError, match="torch backend for float64"):
        neighbour_attention(x.double(), x, x, x, torch.ones(1), x, torch.zeros(2, 1, dtype=torch.int32))
    with pytest.raises(TypeError, match="int32"):
        neighbour_attention(x, x, x, x, torch.ones(1), x, torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("far_cell_size", [None, 0.5])
def test_full_lists_give_exact_ipa_attention(backend, far_cell_size):
    """With every residue in every list the sparse attention is IPA attention (and the far field,
    having no cell beyond the lists, changes nothing)."""
    B, L = 2, 13
    dtype = torch.float64 if backend == "torch" else torch.float32
    inputs = random_ipa_inputs(B, L, ODD_DIMS, dtype, DEVICE if backend == "triton" else "cpu")
    ca, mask = _chain(B, L)
    ca, mask = ca.to(inputs[0].device, dtype), mask.to(inputs[0].device)
    lists = spatial_neighbour_lists(
        ca,
        mask,
        torch.arange(L).expand(B, L).to(ca.device),
        torch.zeros(B, L, dtype=torch.long, device=ca.device),
        k=L,
        window=2,
        cell_size=100.0,
    )
    out = spatial_ipa_attention(*inputs, mask, lists, ca=ca, backend=backend, far_cell_size=far_cell_size)
    ref = tiled_ipa_attention(*[x.cpu().double() for x in inputs], mask=mask.cpu())
    tol = 1e-12 if backend == "torch" else 1e-5
    for a, b in zip(out, ref):
        assert relative_error(a, b) < tol


def test_far_field_reduces_the_error_of_short_lists_on_a_compact_chain():
    """A wide point kernel (small radius lists): the per-cell far field must recover most of the lost mass."""
    B, L = 1, 200
    g = torch.Generator().manual_seed(3)
    dims = IPADims(heads=2, c=4, c_v=4, p_q=2, p_v=2, r_bias=1, r_pair=1, c_z=2)
    ca = torch.randn(B, L, 3, generator=g, dtype=torch.float64)  # a compact 1 nm globule
    inputs = random_ipa_inputs(B, L, dims, torch.float64, point_scale=0.0, generator=g)
    inputs[3] = ca[:, :, None, None].expand(B, L, 2, 2, 3).clone()  # points at the CA
    inputs[4] = inputs[3].clone()
    inputs[0], inputs[1] = inputs[0] * 0.1, inputs[1] * 0.1
    inputs[-1] = torch.full((2,), 0.5, dtype=torch.float64)
    mask = torch.ones(B, L, dtype=torch.bool)
    lists = spatial_neighbour_lists(
        ca, mask, torch.arange(L)[None], torch.zeros(B, L, dtype=torch.long), k=16, window=2, cell_size=1.0
    )
    ref = tiled_ipa_attention(*inputs, mask=mask)
    near = spatial_ipa_attention(*inputs, mask, lists, ca=ca)
    far = spatial_ipa_attention(*inputs, mask, lists, ca=ca, far_cell_size=0.5)
    assert relative_error(far[0], ref[0]) < 0.5 * relative_error(near[0], ref[0])
