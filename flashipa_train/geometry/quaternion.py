"""Unit quaternions (w, x, y, z order, Hamilton convention) and their rotation matrices.

A quaternion q = (w, v) acts on a point p as q p q*, which equals R(q) @ p with the matrix from
`quat_to_rotmat`. q and -q give the same rotation; `rotmat_to_quat` returns the one with w >= 0.
"""

import functools

import torch

# Below this value a squared Shepperd radicand belongs to a branch that is never selected: the
# four radicands sum to 4, so the largest is always >= 1. Clamping keeps the unselected branches
# finite so that torch.where does not turn their inf/NaN gradients into NaN.
_UNSELECTED_RADICAND_FLOOR = 0.25


def quat_multiply(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Hamilton product q1 * q2 of quaternions [*, 4] (wxyz); leading dims broadcast.

    The rotation of q1 * q2 is R(q1) @ R(q2): first q2, then q1.
    """
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )  # [*, 4]


def quat_to_rotmat(quat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [*, 3, 3] from quaternions [*, 4] (wxyz), of any non-zero norm.

    Each entry of R is a quadratic form in q divided by |q|^2 (for a unit q, R00 = w^2 + x^2 - y^2 - z^2 =
    1 - 2 (y^2 + z^2), and so on): one outer product, one product with a constant [16, 9] table and one
    division, about a seventh of the ATen operations of writing the nine entries one by one (the trunk
    calls this once per block, forward and backward). A zero quaternion has no rotation; the caller must not
    pass one (the result is NaN).
    """
    outer = (quat[..., :, None] * quat[..., None, :]).flatten(-2)  # [*, 16]: q_a q_b
    table = _rotmat_quadratic_forms(quat.dtype, quat.device)  # [16, 9]
    rots = (outer[..., :, None] * table).sum(-2)  # [*, 9]: |q|^2 R, row-major
    norm_sq = outer[..., ::5].sum(-1, keepdim=True)  # [*, 1]: w^2 + x^2 + y^2 + z^2 (diagonal of the outer)
    return (rots / norm_sq).unflatten(-1, (3, 3))  # [*, 3, 3]


# |q|^2 R = sum over (a, b) of q_a q_b TABLE[a, b]; a cross term 2 q_a q_b is split as q_a q_b + q_b q_a.
_W, _X, _Y, _Z = range(4)
_ROTMAT_TERMS = (  # row-major entry of R: [(coefficient, a, b), ...]
    [(1, _W, _W), (1, _X, _X), (-1, _Y, _Y), (-1, _Z, _Z)],  # R00
    [(1, _X, _Y), (1, _Y, _X), (-1, _W, _Z), (-1, _Z, _W)],  # R01 = 2 (xy - wz)
    [(1, _X, _Z), (1, _Z, _X), (1, _W, _Y), (1, _Y, _W)],  # R02 = 2 (xz + wy)
    [(1, _X, _Y), (1, _Y, _X), (1, _W, _Z), (1, _Z, _W)],  # R10 = 2 (xy + wz)
    [(1, _W, _W), (-1, _X, _X), (1, _Y, _Y), (-1, _Z, _Z)],  # R11
    [(1, _Y, _Z), (1, _Z, _Y), (-1, _W, _X), (-1, _X, _W)],  # R12 = 2 (yz - wx)
    [(1, _X, _Z), (1, _Z, _X), (-1, _W, _Y), (-1, _Y, _W)],  # R20 = 2 (xz - wy)
    [(1, _Y, _Z), (1, _Z, _Y), (1, _W, _X), (1, _X, _W)],  # R21 = 2 (yz + wx)
    [(1, _W, _W), (-1, _X, _X), (-1, _Y, _Y), (1, _Z, _Z)],  # R22
)


@functools.cache
def _rotmat_quadratic_forms(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The [16, 9] table of _ROTMAT_TERMS, made once per dtype and device (outside inference mode, so a
    first call from sampling gives a tensor that training can use)."""
    table = [[0.0] * 9 for _ in range(16)]
    for entry, terms in enumerate(_ROTMAT_TERMS):
        for coefficient, a, b in terms:
            table[4 * a + b][entry] += coefficient
    with torch.inference_mode(False):
        return torch.tensor(table, dtype=dtype, device=device)


def rotmat_to_quat(rots: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [*, 4] (wxyz, w >= 0) from rotation matrices [*, 3, 3] by Shepperd's method.

    Each of w, x, y, z can be read off a square root of a combination of the diagonal; Shepperd
    takes the largest of the four (so the square root is >= 1/2 and the divisions are well
    conditioned) and gets the other three from sums/differences of off-diagonal entries. All four
    branches are computed and the right one is gathered, so the function is vectorised and
    differentiable everywhere (including the identity and rotations by pi).
    """
    # Row k of `numerators` is 4 q_k (w, x, y, z): on the diagonal the radicands 4 w^2, 4 x^2, 4 y^2, 4 z^2
    # (1 +- r00 +- r11 +- r22), off it 4 w x = r21 - r12, 4 x y = r01 + r10, ...: all sixteen are one affine
    # map of the nine entries, taken as a product with a constant table and a sum (not a matmul, which
    # a float32 TF32 setting would round).
    linear, offset = _shepperd_affine_map(rots.dtype, rots.device)  # [9, 16], [16]
    numerators = ((rots.flatten(-2)[..., :, None] * linear).sum(-2) + offset).unflatten(-1, (4, 4))
    radicands = numerators.diagonal(dim1=-2, dim2=-1)  # [*, 4]
    twice_largest = torch.sqrt(radicands.clamp(min=_UNSELECTED_RADICAND_FLOOR))  # [*, 4]
    # Dividing row k by 2 sqrt(radicand_k) = 4 q_k gives the quaternion.
    candidates = numerators / (2 * twice_largest[..., None])  # [*, 4 branches, 4]

    branch = radicands.argmax(dim=-1)  # [*]
    index = branch[..., None, None].expand(*branch.shape, 1, 4)  # [*, 1, 4]
    quat = candidates.gather(-2, index).squeeze(-2)  # [*, 4]
    quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
    return torch.where(quat[..., :1] < 0, -quat, quat)  # [*, 4]


# Entry (k, m) of Shepperd's numerators 4 q_k q_m as (constant, [(sign, row, column) of R, ...]).
_SHEPPERD_TERMS = {
    (0, 0): (1, [(1, 0, 0), (1, 1, 1), (1, 2, 2)]),  # 4 w^2
    (1, 1): (1, [(1, 0, 0), (-1, 1, 1), (-1, 2, 2)]),  # 4 x^2
    (2, 2): (1, [(-1, 0, 0), (1, 1, 1), (-1, 2, 2)]),  # 4 y^2
    (3, 3): (1, [(-1, 0, 0), (-1, 1, 1), (1, 2, 2)]),  # 4 z^2
    (0, 1): (0, [(1, 2, 1), (-1, 1, 2)]),  # 4 w x
    (0, 2): (0, [(1, 0, 2), (-1, 2, 0)]),  # 4 w y
    (0, 3): (0, [(1, 1, 0), (-1, 0, 1)]),  # 4 w z
    (1, 2): (0, [(1, 0, 1), (1, 1, 0)]),  # 4 x y
    (1, 3): (0, [(1, 0, 2), (1, 2, 0)]),  # 4 x z
    (2, 3): (0, [(1, 1, 2), (1, 2, 1)]),  # 4 y z
}


@functools.cache
def _shepperd_affine_map(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """numerators (flattened [16]) = R (flattened [9]) @ linear [9, 16] + offset [16], from _SHEPPERD_TERMS
    (symmetric: entry (m, k) equals (k, m)); made once per dtype and device, outside inference mode."""
    linear = [[0.0] * 16 for _ in range(9)]
    offset = [0.0] * 16
    for (k, m), (constant, terms) in _SHEPPERD_TERMS.items():
        for out in {4 * k + m, 4 * m + k}:
            offset[out] = float(constant)
            for sign, row, column in terms:
                linear[3 * row + column][out] = float(sign)
    with torch.inference_mode(False):
        return torch.tensor(linear, dtype=dtype, device=device), torch.tensor(offset, dtype=dtype, device=device)
