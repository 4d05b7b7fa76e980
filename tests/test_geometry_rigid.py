"""Specification of flashipa_train.geometry.Rigid: x -> rots @ x + trans over leading dims [*]."""

import pytest
import torch

from flashipa_train.geometry import Rigid, quat_to_rotmat, rotmat_mul, rotmat_to_quat, uniform_so3

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-13}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref)).item()


def random_rigid(shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0) -> Rigid:
    generator = torch.Generator().manual_seed(seed)
    rots = uniform_so3(shape, torch.float64, generator=generator)
    trans = 10 * torch.randn(*shape, 3, dtype=torch.float64, generator=generator)
    return Rigid(rots, trans).to(dtype)


def random_points(shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 100) -> torch.Tensor:
    return (5 * torch.randn(*shape, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))).to(dtype)


def test_identity_leaves_points_unchanged():
    rigid = Rigid.identity((2, 7), torch.float64)
    points = random_points((2, 7))
    assert rigid.shape == (2, 7) and rigid.dtype == torch.float64
    assert torch.equal(rigid.apply(points), points)


@pytest.mark.parametrize("dtype", DTYPES)
def test_compose_with_inverse_is_identity(dtype):
    rigid = random_rigid((4, 9), dtype)
    identity = Rigid.identity((4, 9), dtype)
    for composed in (rigid.compose(rigid.invert()), rigid.invert().compose(rigid)):
        assert rel_err(composed.rots, identity.rots) < TOL[dtype]
        assert composed.trans.abs().max() < 10 * TOL[dtype] * rigid.trans.abs().max()


@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_then_invert_apply_round_trips(dtype):
    rigid = random_rigid((3, 11), dtype)
    points = random_points((3, 11), dtype)
    assert rel_err(rigid.invert_apply(rigid.apply(points)), points) < TOL[dtype]
    assert rel_err(rigid.invert().apply(points), rigid.invert_apply(points)) < TOL[dtype]


def test_compose_applies_the_right_transform_first():
    a, b = random_rigid((5,), seed=1), random_rigid((5,), seed=2)
    points = random_points((5,))
    assert rel_err(a.compose(b).apply(points), a.apply(b.apply(points))) < 1e-14


def test_apply_broadcasts_a_per_residue_rigid_over_points():
    rigid = random_rigid((2, 6))  # [B, L]
    points = random_points((2, 6, 4))  # [B, L, P, 3]
    out = rigid[..., None].apply(points)
    assert out.shape == (2, 6, 4, 3)
    ref = torch.einsum("blij,blpj->blpi", rigid.rots, points) + rigid.trans[:, :, None]
    assert rel_err(out, ref) < 1e-14
    assert rel_err(rigid[..., None].invert_apply(out), points) < 1e-13


def test_compose_broadcasts_leading_dims():
    pairwise = random_rigid((6,), seed=3)[:, None].invert().compose(random_rigid((6,), seed=3)[None, :])
    assert pairwise.shape == (6, 6)
    assert (
        rel_err(
            pairwise.rots.diagonal(dim1=0, dim2=1).permute(2, 0, 1), torch.eye(3, dtype=torch.float64).expand(6, 3, 3)
        )
        < 1e-14
    )


def test_getitem_indexes_leading_dims_like_a_tensor():
    rigid = random_rigid((4, 5))
    mask = torch.tensor([True, False, True, True, False])
    assert rigid[0].shape == (5,)
    assert rigid[:, 1:3].shape == (4, 2)
    assert rigid[..., None].shape == (4, 5, 1)
    assert rigid[None].shape == (1, 4, 5)
    assert rigid[:, mask].shape == (4, 3)
    assert torch.equal(rigid[2, 3].trans, rigid.trans[2, 3])
    assert torch.equal(rigid[2, 3].rots, rigid.rots[2, 3])


def test_unsqueeze_counts_only_leading_dims():
    rigid = random_rigid((4, 5))
    assert rigid.unsqueeze(0).shape == (1, 4, 5)
    assert rigid.unsqueeze(-1).shape == (4, 5, 1)
    assert rigid.unsqueeze(1).shape == (4, 1, 5)
    assert torch.equal(rigid.unsqueeze(-1).rots, rigid[..., None].rots)
    with pytest.raises(IndexError, match="unsqueeze"):
        rigid.unsqueeze(3)


def test_to_changes_dtype_of_rots_and_trans():
    rigid = random_rigid((3,), torch.float32).to(torch.float64)
    assert rigid.rots.dtype == rigid.trans.dtype == torch.float64
    assert rigid.to(device="cpu").device == torch.device("cpu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_7_round_trips_with_canonical_quaternion(dtype):
    rigid = random_rigid((2, 8), dtype)
    tensor_7 = rigid.to_tensor_7()
    assert tensor_7.shape == (2, 8, 7) and tensor_7.dtype == dtype
    assert (tensor_7[..., 0] >= 0).all()
    back = Rigid.from_tensor_7(tensor_7)
    assert rel_err(back.rots, rigid.rots) < TOL[dtype]
    assert torch.equal(back.trans, rigid.trans)


def test_from_quats_normalises_quaternions():
    rigid = random_rigid((7,))
    quats = rotmat_to_quat(rigid.rots)
    assert rel_err(Rigid.from_quats(3.0 * quats, rigid.trans).rots, rigid.rots) < 1e-14


def test_compose_update_vec_with_zero_update_is_identity_and_matches_from_quats():
    rigid = random_rigid((5,))
    zero = torch.zeros(5, 6, dtype=torch.float64)
    assert rel_err(rigid.compose_update_vec(zero).rots, rigid.rots) < 1e-15
    update = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    quats = torch.cat([torch.ones(5, 1, dtype=torch.float64), update[:, :3]], dim=-1)
    ref = rigid.compose(Rigid.from_quats(quats, update[:, 3:]))
    out = rigid.compose_update_vec(update)
    assert rel_err(out.rots, ref.rots) < 1e-15 and rel_err(out.trans, ref.trans) < 1e-15


def test_scale_translation_scales_trans_and_keeps_rots():
    rigid = random_rigid((4,))
    scaled = rigid.scale_translation(0.1)
    assert torch.equal(scaled.rots, rigid.rots)
    assert torch.allclose(scaled.trans, 0.1 * rigid.trans)


def test_constructor_rejects_mismatched_shapes_with_a_clear_message():
    with pytest.raises(ValueError, match="same"):
        Rigid(torch.eye(3).expand(4, 3, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="dtype"):
        Rigid(torch.eye(3), torch.zeros(3, dtype=torch.float64))


def test_rotmat_mul_is_the_matrix_product_and_ignores_a_tf32_matmul_setting():
    a = quat_to_rotmat(torch.randn(5, 1, 4, dtype=torch.float64))
    b = quat_to_rotmat(torch.randn(1, 7, 4, dtype=torch.float64))
    assert rel_err(rotmat_mul(a, b), a @ b) < 1e-15  # leading dims broadcast as matmul's
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # TF32/bf16 matmuls where the hardware has them
        out = rotmat_mul(a.float(), b.float())
    finally:
        torch.set_float32_matmul_precision(previous)
    assert rel_err(out.double(), a @ b) < 1e-6
