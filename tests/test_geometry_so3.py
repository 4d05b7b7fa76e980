"""Specification of flashipa_train.geometry.so3: exp/log maps, angles, geodesics, uniform sampling."""

import math

import pytest
import torch

from flashipa_train.geometry import (
    hat,
    quat_to_rotmat,
    rotation_angle,
    so3_exp,
    so3_geodesic_interpolate,
    so3_log,
    uniform_so3,
    vee,
)

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
# Angles at and within 1e-6 of the two singular points of axis-angle, plus the Taylor threshold.
NEAR_ZERO = [0.0, 1e-15, 1e-9, 1e-7, 1e-6, 1e-3 * (1 - 1e-9), 1e-3 * (1 + 1e-9)]
NEAR_PI = [math.pi, math.pi - 1e-12, math.pi - 1e-9, math.pi - 1e-7, math.pi - 1e-6]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref)).item()


def random_axes(n: int, seed: int = 0) -> torch.Tensor:
    axes = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return axes / axes.norm(dim=-1, keepdim=True)  # [n, 3]


def exp_reference(rotvec: torch.Tensor) -> torch.Tensor:
    """float64 exp through the half-angle quaternion (cos t/2, sin t/2 axis), exact at small angles."""
    angle = rotvec.norm(dim=-1, keepdim=True)
    axis = torch.where(angle > 0, rotvec / angle.clamp(min=1e-300), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    return quat_to_rotmat(torch.cat([torch.cos(angle / 2), torch.sin(angle / 2) * axis], dim=-1))


def test_hat_is_the_cross_product_and_vee_inverts_it():
    v, p = random_axes(32, seed=1) * 2.5, random_axes(32, seed=2)
    assert rel_err((hat(v) @ p[..., None])[..., 0], torch.linalg.cross(v, p, dim=-1)) < 1e-15
    assert torch.equal(vee(hat(v)), v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_so3_exp_matches_float64_quaternion_reference_for_random_rotvecs(dtype):
    rotvec = (
        random_axes(256) * torch.rand(256, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * math.pi
    )
    out = so3_exp(rotvec.to(dtype))
    assert out.dtype == dtype
    assert rel_err(out.double(), exp_reference(rotvec)) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_so3_log_exp_round_trip_for_random_rotvecs(dtype):
    angles = torch.rand(256, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * (math.pi - 1e-3)
    rotvec = (random_axes(256, seed=5) * angles).to(dtype)
    out = so3_log(so3_exp(rotvec))
    assert out.dtype == dtype
    assert rel_err(out, rotvec) < 10 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("angle", NEAR_ZERO)
def test_so3_exp_and_log_are_accurate_near_angle_zero(dtype, angle):
    rotvec = random_axes(16, seed=6) * angle  # [16, 3] float64
    rots = so3_exp(rotvec.to(dtype))
    ref = exp_reference(rotvec)
    assert (rots.double() - ref).abs().max() < TOL[dtype]
    # The log keeps relative accuracy all the way down: error / angle, and exactly 0 at angle 0.
    assert (so3_log(rots).double() - rotvec).norm(dim=-1).max() <= TOL[dtype] * angle
    assert (so3_log(ref.to(dtype)).double() - rotvec).norm(dim=-1).max() <= TOL[dtype] * angle


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("angle", NEAR_PI)
def test_so3_log_exp_round_trip_near_angle_pi_compares_rotations(dtype, angle):
    rots = exp_reference(random_axes(16, seed=7) * angle).to(dtype)  # [16, 3, 3]
    rotvec = so3_log(rots)
    assert torch.isfinite(rotvec).all()
    assert rel_err(so3_exp(rotvec), rots) < 10 * TOL[dtype]
    assert (rotvec.double().norm(dim=-1) - angle).abs().max() < 10 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotation_angle_matches_rotvec_norm_from_zero_to_pi(dtype):
    angles = torch.tensor(NEAR_ZERO + [0.5, 1.0, 2.0, 3.0] + NEAR_PI, dtype=torch.float64)
    rots = exp_reference(random_axes(angles.shape[0], seed=8) * angles[:, None]).to(dtype)
    out = rotation_angle(rots)
    assert out.dtype == dtype
    assert (out.double() - angles).abs().max() < 10 * TOL[dtype]


def test_so3_exp_and_log_gradients_are_finite_and_correct_at_angle_zero():
    weights = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    rotvec = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (weights * so3_exp(rotvec)).sum().backward()
    # d exp(v)/dv_i at 0 is hat(e_i).
    assert torch.allclose(rotvec.grad, (weights * hat(torch.eye(3, dtype=torch.float64))).sum((-1, -2)))

    rots = torch.eye(3, dtype=torch.float64, requires_grad=True)
    so3_log(rots).sum().backward()
    assert torch.isfinite(rots.grad).all()

    # log(exp(v)) = v near 0, so its Jacobian there is the identity.
    rotvec = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    direction = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    (direction * so3_log(so3_exp(rotvec))).sum().backward()
    assert torch.allclose(rotvec.grad, direction, atol=1e-14)


@pytest.mark.parametrize("scale", [1e-5, 1.0, 3.0])
def test_so3_exp_and_log_pass_gradcheck(scale):
    rotvec = (random_axes(6, seed=10) * scale).requires_grad_(True)
    assert torch.autograd.gradcheck(so3_exp, (rotvec,))
    rots = exp_reference(rotvec.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(so3_log, (rots,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_geodesic_interpolation_hits_endpoints(dtype):
    rots_0, rots_1 = (
        uniform_so3((64,), dtype, generator=torch.Generator().manual_seed(11)),
        uniform_so3((64,), dtype, generator=torch.Generator().manual_seed(12)),
    )
    assert rel_err(so3_geodesic_interpolate(rots_0, rots_1, 0.0), rots_0) < TOL[dtype]
    assert rel_err(so3_geodesic_interpolate(rots_0, rots_1, 1.0), rots_1) < 10 * TOL[dtype]


def test_geodesic_interpolation_has_constant_angular_speed_and_broadcasts_t():
    generator = torch.Generator().manual_seed(13)
    rots_0 = uniform_so3((32,), torch.float64, generator=generator)
    rots_1 = uniform_so3((32,), torch.float64, generator=generator)
    total = rotation_angle(rots_0.transpose(-1, -2) @ rots_1)  # [32]
    t = torch.rand(32, dtype=torch.float64, generator=generator)  # [32], one time per rotation
    s = torch.rand(32, dtype=torch.float64, generator=generator)
    at_t = so3_geodesic_interpolate(rots_0, rots_1, t)
    at_s = so3_geodesic_interpolate(rots_0, rots_1, s)
    assert at_t.shape == (32, 3, 3)
    travelled = rotation_angle(at_t.transpose(-1, -2) @ at_s)
    assert rel_err(travelled, (t - s).abs() * total) < 1e-12
    assert rel_err(rotation_angle(rots_0.transpose(-1, -2) @ at_t), t * total) < 1e-12


def test_uniform_so3_mean_rotation_is_zero():
    rots = uniform_so3((100_000,), torch.float64, generator=torch.Generator().manual_seed(14))
    assert rots.mean(0).abs().max() < 0.01


def test_uniform_so3_angles_follow_the_haar_cdf():
    rots = uniform_so3((100_000,), torch.float64, generator=torch.Generator().manual_seed(15))
    angles = rotation_angle(rots).sort().values
    empirical = torch.arange(1, angles.shape[0] + 1, dtype=torch.float64) / angles.shape[0]
    haar_cdf = (angles - torch.sin(angles)) / math.pi
    assert (empirical - haar_cdf).abs().max() < 0.01  # Kolmogorov-Smirnov distance; 1% critical value 0.005


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_so3_has_requested_shape_dtype_and_is_reproducible(dtype):
    a = uniform_so3((2, 5), dtype, "cpu", generator=torch.Generator().manual_seed(16))
    b = uniform_so3((2, 5), dtype, "cpu", generator=torch.Generator().manual_seed(16))
    assert a.shape == (2, 5, 3, 3) and a.dtype == dtype
    assert torch.equal(a, b)
    assert torch.allclose(torch.linalg.det(a), torch.ones((), dtype=dtype), atol=10 * TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_so3_functions_preserve_dtype(dtype):
    rotvec = random_axes(4).to(dtype)
    rots = so3_exp(rotvec)
    outputs = [
        hat(rotvec),
        vee(rots),
        rots,
        so3_log(rots),
        rotation_angle(rots),
        so3_geodesic_interpolate(rots, rots.flip(0), 0.3),
    ]
    assert all(out.dtype == dtype for out in outputs)
