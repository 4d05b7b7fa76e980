"""Unit quaternions (w, x, y, z order, Hamilton convention) and their rotation matrices.

A quaternion q = (w, v) acts on a point p as q p q*, which equals R(q) @ p with the matrix from
`quat_to_rotmat`. q and -q give the same rotation; `rotmat_to_quat` returns the one with w >= 0.
"""

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
    """Rotation matrices [*, 3, 3] from quaternions [*, 4] (wxyz), normalised here first.

    A zero quaternion has no rotation; the caller must not pass one (the result is NaN).
    """
    quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)  # [*, 4]
    w, x, y, z = quat.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))  # [*, 3, 3]


def rotmat_to_quat(rots: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [*, 4] (wxyz, w >= 0) from rotation matrices [*, 3, 3] by Shepperd's method.

    Each of w, x, y, z can be read off a square root of a combination of the diagonal; Shepperd
    takes the largest of the four (so the square root is >= 1/2 and the divisions are well
    conditioned) and gets the other three from sums/differences of off-diagonal entries. All four
    branches are computed and the right one is gathered, so the function is vectorised and
    differentiable everywhere (including the identity and rotations by pi).
    """
    r00, r01, r02 = rots[..., 0, 0], rots[..., 0, 1], rots[..., 0, 2]
    r10, r11, r12 = rots[..., 1, 0], rots[..., 1, 1], rots[..., 1, 2]
    r20, r21, r22 = rots[..., 2, 0], rots[..., 2, 1], rots[..., 2, 2]

    # 4 w^2, 4 x^2, 4 y^2, 4 z^2 for a unit quaternion.
    radicands = torch.stack(
        [
            1 + r00 + r11 + r22,
            1 + r00 - r11 - r22,
            1 - r00 + r11 - r22,
            1 - r00 - r11 + r22,
        ],
        dim=-1,
    )  # [*, 4]
    twice_largest = torch.sqrt(radicands.clamp(min=_UNSELECTED_RADICAND_FLOOR))  # [*, 4]

    # Antisymmetric parts give 4 w x, 4 w y, 4 w z; symmetric parts give 4 x y, 4 x z, 4 y z.
    wx, wy, wz = r21 - r12, r02 - r20, r10 - r01
    xy, xz, yz = r01 + r10, r02 + r20, r12 + r21
    # Row k: 4 q_k * (w, x, y, z); dividing by 2 sqrt(radicand_k) = 4 q_k gives the quaternion.
    numerators = torch.stack(
        [
            torch.stack([radicands[..., 0], wx, wy, wz], dim=-1),
            torch.stack([wx, radicands[..., 1], xy, xz], dim=-1),
            torch.stack([wy, xy, radicands[..., 2], yz], dim=-1),
            torch.stack([wz, xz, yz, radicands[..., 3]], dim=-1),
        ],
        dim=-2,
    )  # [*, 4 branches, 4]
    candidates = numerators / (2 * twice_largest[..., None])  # [*, 4 branches, 4]

    branch = radicands.argmax(dim=-1)  # [*]
    index = branch[..., None, None].expand(*branch.shape, 1, 4)  # [*, 1, 4]
    quat = candidates.gather(-2, index).squeeze(-2)  # [*, 4]
    quat = quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)
    return torch.where(quat[..., :1] < 0, -quat, quat)  # [*, 4]
