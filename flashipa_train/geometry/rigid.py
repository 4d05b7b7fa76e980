"""Rigid transforms x -> R x + t, batched over arbitrary leading dims.

`Rigid` holds plain tensors `rots [*, 3, 3]` and `trans [*, 3]` with the same leading shape [*].
Operations between rigids, and between a rigid and points, broadcast over the leading dims like
torch tensors do, so a rigid of shape [B, L] indexed as `rigid[..., None]` (shape [B, L, 1]) acts
on points [B, L, P, 3].
"""

from __future__ import annotations

import torch

from flashipa_train.geometry.quaternion import quat_to_rotmat, rotmat_to_quat


def rotate(rots: torch.Tensor, vecs: torch.Tensor) -> torch.Tensor:
    """rots [*, 3, 3] @ vecs [*, 3] -> [*, 3], leading dims broadcast.

    A product and a sum over 3, not a matmul: with broadcast leading dims a matmul becomes a batched
    cuBLAS GEMV/GEMM of 3 x 3 blocks in float32 (CUDA cores, 32 x 32 tiles), which took about a fifth
    of the H200's step time at L = 32768 (docs/benchmarks/step_profile.md)."""
    return (rots * vecs.unsqueeze(-2)).sum(-1)


def rotmat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [*, 3, 3] @ b [*, 3, 3] -> [*, 3, 3], leading dims broadcast, as products and a sum over 3: exact
    float32 whatever torch's float32 matmul precision (a TF32 setting would round a matmul to about 1e-3),
    and elementwise kernels instead of batched 3 x 3 cuBLAS calls (see `rotate`)."""
    return (a[..., :, :, None] * b[..., None, :, :]).sum(-2)


class Rigid:
    """A batch of rigid transforms T(x) = rots @ x + trans.

    Args:
        rots: rotation matrices [*, 3, 3] (assumed orthonormal, det +1; not checked).
        trans: translations [*, 3], same leading shape and dtype as rots.
    """

    def __init__(self, rots: torch.Tensor, trans: torch.Tensor):
        if rots.shape[-2:] != (3, 3) or trans.shape[-1:] != (3,) or rots.shape[:-2] != trans.shape[:-1]:
            raise ValueError(
                f"Rigid: rots must be [*, 3, 3] and trans [*, 3] with the same [*]; got rots "
                f"{tuple(rots.shape)} and trans {tuple(trans.shape)}. Expand one to the other's shape."
            )
        if rots.dtype != trans.dtype:
            raise ValueError(f"Rigid: rots dtype {rots.dtype} differs from trans dtype {trans.dtype}; cast one.")
        self.rots = rots
        self.trans = trans

    # Construction

    @staticmethod
    def identity(
        shape: tuple[int, ...] | torch.Size,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Rigid:
        """Identity transforms of leading shape `shape`."""
        rots = torch.eye(3, dtype=dtype, device=device).expand(*shape, 3, 3).clone()  # [*, 3, 3]
        trans = torch.zeros(*shape, 3, dtype=dtype, device=device)  # [*, 3]
        return Rigid(rots, trans)

    @staticmethod
    def from_quats(quats: torch.Tensor, trans: torch.Tensor) -> Rigid:
        """Rigid from quaternions [*, 4] (wxyz, normalised here) and translations [*, 3]."""
        return Rigid(quat_to_rotmat(quats), trans)

    @staticmethod
    def from_tensor_7(tensor: torch.Tensor) -> Rigid:
        """Inverse of `to_tensor_7`: [*, 7] = quaternion wxyz (normalised here) then translation."""
        return Rigid.from_quats(tensor[..., :4], tensor[..., 4:])

    def to_tensor_7(self) -> torch.Tensor:
        """[*, 7]: unit quaternion wxyz with w >= 0, then translation xyz."""
        return torch.cat([rotmat_to_quat(self.rots), self.trans], dim=-1)

    # Group operations

    def compose(self, other: Rigid) -> Rigid:
        """self ∘ other, i.e. x -> self(other(x)). Leading dims broadcast."""
        rots = rotmat_mul(self.rots, other.rots)  # [*, 3, 3]
        trans = rotate(self.rots, other.trans) + self.trans  # [*, 3]
        return Rigid(rots, trans)

    def compose_update_vec(self, update: torch.Tensor) -> Rigid:
        """self ∘ T_update for a backbone update [*, 6] = (b, c, d, t_x, t_y, t_z).

        T_update has rotation quat_to_rotmat((1, b, c, d)) and translation t, as in AlphaFold2's
        backbone update (Algorithm 23): a zero update is the identity.
        """
        ones = torch.ones_like(update[..., :1])
        quats = torch.cat([ones, update[..., :3]], dim=-1)  # [*, 4]
        return self.compose(Rigid.from_quats(quats, update[..., 3:]))

    def invert(self) -> Rigid:
        """The inverse transform x -> rots^T (x - trans)."""
        rots_inv = self.rots.transpose(-1, -2)  # [*, 3, 3]
        return Rigid(rots_inv, -rotate(rots_inv, self.trans))

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """rots @ points + trans for points [*, 3]; leading dims broadcast."""
        return rotate(self.rots, points) + self.trans

    def invert_apply(self, points: torch.Tensor) -> torch.Tensor:
        """rots^T @ (points - trans) for points [*, 3] (global -> local); leading dims broadcast."""
        return rotate(self.rots.transpose(-1, -2), points - self.trans)

    # Tensor-like plumbing

    @property
    def shape(self) -> torch.Size:
        """Leading shape [*]."""
        return self.trans.shape[:-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.trans.dtype

    @property
    def device(self) -> torch.device:
        return self.trans.device

    def __getitem__(self, index) -> Rigid:
        """Index the leading dims like a tensor of shape [*]: ints, slices, None, Ellipsis, masks."""
        if not isinstance(index, tuple):
            index = (index,)
        return Rigid(self.rots[index + (slice(None), slice(None))], self.trans[index + (slice(None),)])

    def unsqueeze(self, dim: int) -> Rigid:
        """Insert a leading dim of size 1 at `dim` (counted over the leading dims [*] only)."""
        n = len(self.shape)
        if not -(n + 1) <= dim <= n:
            raise IndexError(f"Rigid.unsqueeze: dim {dim} out of range for leading shape {tuple(self.shape)}")
        if dim < 0:
            dim += n + 1
        return Rigid(self.rots.unsqueeze(dim), self.trans.unsqueeze(dim))

    def to(self, *args, **kwargs) -> Rigid:
        """Like torch.Tensor.to, applied to rots and trans (e.g. `to(torch.float64)`, `to("cuda")`)."""
        return Rigid(self.rots.to(*args, **kwargs), self.trans.to(*args, **kwargs))

    def scale_translation(self, factor: float | torch.Tensor) -> Rigid:
        """Same rotations, translations times `factor` (a float, or a tensor broadcastable to [*, 3]).

        E.g. `scale_translation(0.1)` turns Angstrom into nanometre.
        """
        return Rigid(self.rots, self.trans * factor)

    def __repr__(self) -> str:
        return f"Rigid(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device})"
