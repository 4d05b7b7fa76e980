"""Masked means and centring of coordinates / frames at the mask-weighted centre of mass (CA)."""

import torch

from flashipa_train.geometry.rigid import Rigid


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...], eps: float = 1e-8) -> torch.Tensor:
    """Mean of x over `dim` counting only entries where mask is nonzero (mask may hold weights).

    mask must broadcast to x (e.g. x [*, L, 3] with mask [*, L, 1]). Where the mask sums to zero
    the result is 0 (the denominator is clamped at eps).
    """
    mask = torch.broadcast_to(mask.to(x.dtype), x.shape)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=eps)


def centre(coords: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Translate coords [*, L, 3] so that the mean of the unmasked positions (mask [*, L]) is 0.

    Returns (centred [*, L, 3], centre [*, 3]). Every position, masked or not, is shifted by the
    same centre; a fully masked chain has centre 0.
    """
    centre_of_mass = masked_mean(coords, mask[..., None], dim=-2)  # [*, 3]
    return coords - centre_of_mass[..., None, :], centre_of_mass


def centre_rigid(rigid: Rigid, mask: torch.Tensor) -> tuple[Rigid, torch.Tensor]:
    """Translate frames [*, L] so that their unmasked origins (CA) have mean 0; rotations unchanged.

    Returns (centred frames [*, L], centre [*, 3]).
    """
    trans, centre_of_mass = centre(rigid.trans, mask)  # [*, L, 3], [*, 3]
    return Rigid(rigid.rots, trans), centre_of_mass
