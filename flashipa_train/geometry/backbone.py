"""Residue frames from backbone atoms and backbone atoms from residue frames (AlphaFold2 convention).

Frame convention (AlphaFold2 residue constants, "backbone" rigid group; the Gram-Schmidt step is
AF2 supplement Algorithm 21 rigidFrom3Points(x1=N, x2=CA, x3=C), equivalently OpenFold's base atoms
(C, CA, N) followed by its diag(-1, 1, -1) flip):
    origin  CA
    x axis  along CA -> C
    y axis  in the N-CA-C plane, on N's side (N has y > 0)
    z axis  x cross y (right handed)
`rots` has the axes as columns, so global = rots @ local + CA.

Ideal local coordinates (Angstrom) in this frame: N (-0.525, 1.363, 0), CA (0, 0, 0),
C (1.526, 0, 0). O lives in the psi frame: origin C, x axis along CA -> C, y axis along the part of
CA - N perpendicular to x (away from N), z = x cross y; O sits at (0.627, 1.062, 0) in that frame
after a rotation by psi about its x axis. With this sign, dihedral(N, CA, C, O) = psi + pi, i.e.
psi is the ordinary backbone torsion N-CA-C-N(i+1) for a planar peptide (O anti to N(i+1)).
"""

import functools
import math

import torch

from flashipa_train.geometry.rigid import Rigid, rotate

# AlphaFold2 residue constants (alanine values; literature bond lengths/angles), Angstrom.
_IDEAL_N = (-0.525, 1.363, 0.0)
_IDEAL_CA = (0.0, 0.0, 0.0)
_IDEAL_C = (1.526, 0.0, 0.0)
_IDEAL_O_IN_PSI_FRAME = (0.627, 1.062, 0.0)

DEFAULT_PSI = math.radians(-47.0)
"""psi (radians) used when none is given: the ideal right-handed alpha helix (phi, psi) = (-57, -47) deg."""


def _gram_schmidt(x_direction: torch.Tensor, xy_direction: torch.Tensor, origin: torch.Tensor, eps: float) -> Rigid:
    """Frame with x along x_direction [*, 3], y in the plane of both directions on xy_direction's side."""
    e1 = x_direction / torch.sqrt((x_direction**2).sum(-1, keepdim=True).clamp(min=eps))  # [*, 3]
    u2 = xy_direction - (e1 * xy_direction).sum(-1, keepdim=True) * e1  # [*, 3]
    e2 = u2 / torch.sqrt((u2**2).sum(-1, keepdim=True).clamp(min=eps))  # [*, 3]
    e3 = torch.linalg.cross(e1, e2, dim=-1)  # [*, 3]
    return Rigid(torch.stack([e1, e2, e3], dim=-1), origin)  # rots [*, 3, 3] with axes as columns


def frames_from_backbone(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor, eps: float = 1e-8) -> Rigid:
    """Residue frames [*] from N, CA, C positions [*, 3] (see the module docstring for the convention).

    Squared lengths are clamped at eps before the square roots of the normalisations, so degenerate
    (e.g. padded, all-zero) residues give finite frames and gradients; real residues are unaffected.
    """
    return _gram_schmidt(c - ca, n - ca, ca, eps)


def ideal_backbone_local(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
    """Ideal N, CA, C, O [4, 3] in the backbone frame, O placed with psi = DEFAULT_PSI."""
    psi = torch.tensor(DEFAULT_PSI, dtype=dtype, device=device)
    n_ca_c = _ideal_constants(psi.dtype, psi.device)[0]  # [3, 3]
    o = _oxygen_local(torch.stack([torch.sin(psi), torch.cos(psi)]))  # [3]
    return torch.cat([n_ca_c, o[None]], dim=0)  # [4, 3]


@functools.cache
def _ideal_constants(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Rigid]:
    """Ideal N, CA, C [3, 3] in the backbone frame, O [3] in the psi frame, and the psi frame at psi = 0
    in the backbone frame: made once per dtype and device (a new tensor on a GPU is a host-to-device copy
    that waits for the host, three of them in every forward). Made outside inference mode: a first call
    from sampling must not give training tensors that autograd refuses to save."""
    with torch.inference_mode(False):
        n_ca_c = torch.tensor([_IDEAL_N, _IDEAL_CA, _IDEAL_C], dtype=dtype, device=device)  # [3, 3]
        o_in_psi_frame = torch.tensor(_IDEAL_O_IN_PSI_FRAME, dtype=dtype, device=device)  # [3]
        n, ca, c = n_ca_c.unbind(0)
        return n_ca_c, o_in_psi_frame, _gram_schmidt(c - ca, ca - n, c, eps=1e-8)


def _oxygen_local(psi_sin_cos: torch.Tensor) -> torch.Tensor:
    """O [*, 3] in the backbone frame for unit (sin psi, cos psi) [*, 2]."""
    sin, cos = psi_sin_cos.unbind(-1)
    one, zero = torch.ones_like(sin), torch.zeros_like(sin)
    torsion_rots = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=-1).unflatten(
        -1, (3, 3)
    )  # [*, 3, 3] rotation by psi about x
    _, o_in_psi_frame, psi_frame = _ideal_constants(sin.dtype, sin.device)
    return psi_frame.apply(rotate(torsion_rots, o_in_psi_frame))  # [*, 3]


def backbone_atoms_from_frames(rigid: Rigid, psi: torch.Tensor | None = None) -> torch.Tensor:
    """Backbone atoms [*, 4, 3] in the order N, CA, C, O from residue frames of shape [*].

    N, CA, C use ideal geometry. O uses the psi torsion: `psi` is either angles [*] in radians or
    (sin, cos) pairs [*, 2] (normalised here, so raw network outputs are fine); None means
    DEFAULT_PSI (alpha helix) for every residue. Frames in Angstrom give atoms in Angstrom.
    """
    dtype, device = rigid.dtype, rigid.device
    n_ca_c_local = _ideal_constants(dtype, device)[0]  # [3, 3]
    if psi is None:
        psi = torch.full(rigid.shape, DEFAULT_PSI, dtype=dtype, device=device)
    if psi.dim() == len(rigid.shape):
        psi_sin_cos = torch.stack([torch.sin(psi), torch.cos(psi)], dim=-1)  # [*, 2]
    elif psi.dim() == len(rigid.shape) + 1 and psi.shape[-1] == 2:
        norm = torch.sqrt((psi**2).sum(-1, keepdim=True).clamp(min=1e-12))
        psi_sin_cos = psi / norm  # [*, 2]
    else:
        raise ValueError(
            f"backbone_atoms_from_frames: psi has shape {tuple(psi.shape)}; for frames of shape "
            f"{tuple(rigid.shape)} pass angles {tuple(rigid.shape)} or (sin, cos) {tuple(rigid.shape) + (2,)}."
        )
    o_local = _oxygen_local(psi_sin_cos)  # [*, 3]
    n_ca_c = rigid[..., None].apply(n_ca_c_local)  # [*, 3, 3]
    o = rigid.apply(o_local)  # [*, 3]
    return torch.cat([n_ca_c, o[..., None, :]], dim=-2)  # [*, 4, 3]


def dihedral(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """IUPAC dihedral angles [*] in (-pi, pi] of atoms a-b-c-d, each [*, 3]."""
    b1, b2, b3 = b - a, c - b, d - c
    n1 = torch.linalg.cross(b1, b2, dim=-1)
    n2 = torch.linalg.cross(b2, b3, dim=-1)
    b2_unit = b2 / torch.linalg.vector_norm(b2, dim=-1, keepdim=True)
    sin_part = (torch.linalg.cross(n1, n2, dim=-1) * b2_unit).sum(-1)
    return torch.atan2(sin_part, (n1 * n2).sum(-1))


def psi_from_backbone(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """psi angles [*] (radians, in (-pi, pi]) such that `backbone_atoms_from_frames` puts O where it is.

    Equals dihedral(N, CA, C, O) - pi wrapped to (-pi, pi]: the supervision target for a psi head.
    """
    angle = dihedral(n, ca, c, o) - math.pi
    return torch.where(angle <= -math.pi, angle + 2 * math.pi, angle)
