"""The rotation group SO(3): hat/vee, exponential and logarithm maps, geodesics, uniform sampling.

Rotation vectors (axis-angle) are `axis * angle` with angle in [0, pi]. Both maps are stable and
differentiable at angle 0 (Taylor series behind a safe torch.where) and accurate up to angle pi:
`so3_log` goes through Shepperd's quaternion, which never divides by sin(angle).
"""

import torch

from flashipa_train.geometry.quaternion import quat_to_rotmat, rotmat_to_quat
from flashipa_train.geometry.rigid import rotmat_mul

# Below this angle (exp) or this |quaternion vector part| (log) the closed forms are replaced by
# Taylor series through 4th order; their truncation error (< 1e-18) is below float64 rounding.
_SMALL = 1e-3


def hat(vec: torch.Tensor) -> torch.Tensor:
    """Skew-symmetric matrices [*, 3, 3] with hat(v) @ p == cross(v, p), from vectors [*, 3]."""
    x, y, z = vec.unbind(-1)
    zero = torch.zeros_like(x)
    rows = [zero, -z, y, z, zero, -x, -y, x, zero]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))  # [*, 3, 3]


def vee(mat: torch.Tensor) -> torch.Tensor:
    """Inverse of `hat`: vectors [*, 3] from skew-symmetric matrices [*, 3, 3] (not checked)."""
    return torch.stack([mat[..., 2, 1], mat[..., 0, 2], mat[..., 1, 0]], dim=-1)  # [*, 3]


def so3_exp(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [*, 3, 3] from rotation vectors [*, 3], through the unit quaternion
    (cos(t/2), sin(t/2)/t rotvec), t = |rotvec| (fewer operations than Rodrigues' formula, same rotation).
    """
    angle_sq = (rotvec * rotvec).sum(-1, keepdim=True)  # [*, 1]
    small = angle_sq < _SMALL**2
    # Double where: the closed form never sees angle 0, so its gradient stays finite.
    angle = torch.sqrt(torch.where(small, torch.ones_like(angle_sq), angle_sq))  # [*, 1]
    half_cos = torch.where(small, 1 - angle_sq / 8 + angle_sq**2 / 384, torch.cos(angle / 2))  # [*, 1]
    half_sinc = torch.where(small, 0.5 - angle_sq / 48 + angle_sq**2 / 3840, torch.sin(angle / 2) / angle)
    # |q| = 1 up to rounding; quat_to_rotmat divides by |q|^2 anyway
    return quat_to_rotmat(torch.cat([half_cos, half_sinc * rotvec], dim=-1))  # [*, 3, 3]


def so3_log(rots: torch.Tensor) -> torch.Tensor:
    """Rotation vectors [*, 3] (angle in [0, pi]) from rotation matrices [*, 3, 3].

    Via the quaternion (w, v) with w >= 0: rotvec = 2 atan2(|v|, w) v / |v|. At angle pi the sign
    of the axis is ambiguous (both give the same rotation); which one is returned is unspecified.
    """
    quat = rotmat_to_quat(rots)  # [*, 4]
    w, vec = quat[..., 0], quat[..., 1:]  # [*], [*, 3]
    vec_norm_sq = (vec * vec).sum(-1)  # [*]
    small = vec_norm_sq < _SMALL**2
    vec_norm = torch.sqrt(torch.where(small, torch.ones_like(vec_norm_sq), vec_norm_sq))
    # Small |v| means w close to 1, so the ratio below is small too.
    ratio_sq = vec_norm_sq / (w * w).clamp(min=0.5)  # [*]
    series = (2 / w) * (1 - ratio_sq / 3 + ratio_sq**2 / 5)  # 2 atan(r)/(r w), r = |v|/w
    scale = torch.where(small, series, 2 * torch.atan2(vec_norm, w) / vec_norm)  # [*]
    return scale[..., None] * vec  # [*, 3]


def rotation_angle(rots: torch.Tensor) -> torch.Tensor:
    """Rotation angles [*] in [0, pi] of rotation matrices [*, 3, 3], accurate near 0 and pi.

    Not differentiable at angle 0 (the angle is |rotvec|); use `so3_log` for gradients there.
    """
    quat = rotmat_to_quat(rots)  # [*, 4]
    return 2 * torch.atan2(torch.linalg.vector_norm(quat[..., 1:], dim=-1), quat[..., 0])


def so3_geodesic_interpolate(rots_0: torch.Tensor, rots_1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Point at time t on the geodesic from rots_0 (t=0) to rots_1 (t=1): R0 exp(t log(R0^T R1)).

    rots_0, rots_1: [*, 3, 3]; t: a float or a tensor [*] broadcast against the leading dims.
    The angular speed is constant, |log(R0^T R1)| per unit t. Returns [*, 3, 3].
    """
    rotvec = so3_log(rotmat_mul(rots_0.transpose(-1, -2), rots_1))  # [*, 3]
    t = torch.as_tensor(t, dtype=rotvec.dtype, device=rotvec.device)
    return rotmat_mul(rots_0, so3_exp(t[..., None] * rotvec))  # [*, 3, 3]


def uniform_so3(
    shape: tuple[int, ...] | torch.Size,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotation matrices [*shape, 3, 3] drawn uniformly (Haar measure) on SO(3).

    A standard Gaussian 4-vector is isotropic, so its direction is uniform on the unit 3-sphere,
    which maps to the Haar measure on SO(3). `generator` must live on `device`.
    """
    quat = torch.randn(*shape, 4, dtype=dtype, device=device, generator=generator)  # [*, 4]
    return quat_to_rotmat(quat)  # [*, 3, 3]
