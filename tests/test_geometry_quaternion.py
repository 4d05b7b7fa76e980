"""Specification of flashipa_train.geometry.quaternion: wxyz unit quaternions <-> rotation matrices."""

import math

import pytest
import torch

from flashipa_train.geometry import quat_multiply, quat_to_rotmat, rotmat_to_quat, so3_exp

TOL = {torch.float32: 2e-6, torch.float64: 1e-13}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref)).item()


def random_quats(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, dtype=torch.float64, generator=generator).to(dtype)


def branch_switch_rotations(dtype: torch.dtype) -> torch.Tensor:
    """Rotations where Shepperd's largest component is tied or about to change: identity, pi about
    each axis and about diagonals, 2pi/3 about (1, 1, 1) (all four components equal), and
    perturbations of those by 1e-7 rad."""
    s = 1 / math.sqrt(2)
    rotvecs = [
        (0.0, 0.0, 0.0),
        (math.pi, 0.0, 0.0),
        (0.0, math.pi, 0.0),
        (0.0, 0.0, math.pi),
        (math.pi * s, math.pi * s, 0.0),
        (0.0, -math.pi * s, math.pi * s),
        (math.pi * s, 0.0, math.pi * s),
        (math.pi / 2, 0.0, 0.0),
        (0.0, 0.0, -math.pi / 2),
    ]
    third = 2 * math.pi / 3 / math.sqrt(3)
    rotvecs.append((third, third, third))
    rotvecs = torch.tensor(rotvecs, dtype=torch.float64)  # [K, 3]
    perturb = 1e-7 * torch.randn(rotvecs.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rots = so3_exp(torch.cat([rotvecs, rotvecs + perturb], dim=0))  # [2K, 3, 3]
    return rots.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quat_to_rotmat_gives_orthonormal_matrices_with_det_one_from_unnormalised_quats(dtype):
    rots = quat_to_rotmat(3.7 * random_quats(256, dtype))
    eye = torch.eye(3, dtype=dtype).expand_as(rots)
    assert rel_err(rots.transpose(-1, -2) @ rots, eye) < TOL[dtype]
    assert torch.allclose(torch.linalg.det(rots), torch.ones((), dtype=dtype), atol=10 * TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotmat_to_quat_round_trip(dtype):
    quats = random_quats(512, torch.float64)
    quats = quats / quats.norm(dim=-1, keepdim=True)
    canonical = torch.where(quats[:, :1] < 0, -quats, quats)
    rots = quat_to_rotmat(quats).to(dtype)
    out = rotmat_to_quat(rots)
    assert out.dtype == dtype
    assert rel_err(out.double(), canonical) < 10 * TOL[dtype]
    assert rel_err(quat_to_rotmat(out), rots) < 10 * TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotmat_to_quat_round_trip_at_shepperd_branch_switches(dtype):
    rots = branch_switch_rotations(dtype)
    quats = rotmat_to_quat(rots)
    for k in range(rots.shape[0]):
        assert rel_err(quat_to_rotmat(quats[k]), rots[k]) < 10 * TOL[dtype], k


def test_rotmat_to_quat_returns_unit_quats_with_nonnegative_w():
    rots = torch.cat([quat_to_rotmat(random_quats(512, torch.float64)), branch_switch_rotations(torch.float64)])
    quats = rotmat_to_quat(rots)
    assert (quats[:, 0] >= 0).all()
    assert torch.allclose(quats.norm(dim=-1), torch.ones(quats.shape[0], dtype=torch.float64), atol=1e-14)


def test_rotmat_to_quat_of_identity_is_one():
    quat = rotmat_to_quat(torch.eye(3, dtype=torch.float64))
    assert torch.equal(quat, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))


def test_rotmat_to_quat_batches_over_leading_dims():
    quats = random_quats(24, torch.float64).reshape(2, 3, 4, 4)
    rots = quat_to_rotmat(quats)  # [2, 3, 4, 3, 3]
    assert rots.shape == (2, 3, 4, 3, 3)
    assert rotmat_to_quat(rots).shape == (2, 3, 4, 4)


def test_quat_multiply_matches_matrix_product():
    q1, q2 = random_quats(64, torch.float64, seed=2), random_quats(64, torch.float64, seed=3)
    out = quat_to_rotmat(quat_multiply(q1, q2))
    assert rel_err(out, quat_to_rotmat(q1) @ quat_to_rotmat(q2)) < 1e-14


def test_rotmat_to_quat_gradients_are_finite_at_identity_and_at_pi():
    rots = branch_switch_rotations(torch.float64).requires_grad_(True)
    weights = torch.randn(rots.shape[0], 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (rotmat_to_quat(rots) * weights).sum().backward()
    assert torch.isfinite(rots.grad).all()


def test_rotmat_to_quat_passes_gradcheck_on_random_rotations():
    rots = quat_to_rotmat(random_quats(8, torch.float64, seed=5)).requires_grad_(True)
    assert torch.autograd.gradcheck(rotmat_to_quat, (rots,))
