"""Specification of flashipa_train.geometry.centring: masked means and CA centring."""

import torch

from flashipa_train.geometry import Rigid, centre, centre_rigid, masked_mean, uniform_so3


def test_masked_mean_averages_only_unmasked_entries_and_gives_zero_when_all_masked():
    x = torch.randn(3, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [1] * 6, [0] * 6], dtype=torch.float64)
    out = masked_mean(x, mask[..., None], dim=1)  # [3, 2]
    assert torch.allclose(out[0], x[0, [0, 1, 3]].mean(0))
    assert torch.allclose(out[1], x[1].mean(0))
    assert torch.equal(out[2], torch.zeros(2, dtype=torch.float64))


def test_centre_moves_unmasked_mean_to_origin_and_ignores_padding():
    coords = 10 * torch.randn(2, 8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 50
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 5:] = False
    padded = coords.clone()
    padded[1, 5:] = 1e4  # padding values must not matter
    centred, centre_of_mass = centre(padded, mask)
    assert centred.shape == (2, 8, 3) and centre_of_mass.shape == (2, 3)
    assert torch.allclose(centre_of_mass[1], coords[1, :5].mean(0))
    assert centred[0].mean(0).abs().max() < 1e-12
    assert centred[1, :5].mean(0).abs().max() < 1e-12
    assert torch.allclose(centred + centre_of_mass[:, None], padded)


def test_centre_rigid_centres_translations_and_keeps_rotations():
    rots = uniform_so3((2, 5), torch.float64, generator=torch.Generator().manual_seed(2))
    trans = torch.randn(2, 5, 3, dtype=torch.float64) + 20
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    centred, centre_of_mass = centre_rigid(Rigid(rots, trans), mask)
    assert torch.equal(centred.rots, rots)
    assert torch.allclose(centre_of_mass, centre(trans, mask)[1])
    assert centred.trans[0, :3].mean(0).abs().max() < 1e-12
    assert centred.trans[1].mean(0).abs().max() < 1e-12
