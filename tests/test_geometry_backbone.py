"""Specification of flashipa_train.geometry.backbone: AF2 residue frames <-> N, CA, C, O atoms."""

import math
from pathlib import Path

import numpy
import pytest
import torch

from flashipa_train.geometry import (
    DEFAULT_PSI,
    Rigid,
    backbone_atoms_from_frames,
    dihedral,
    frames_from_backbone,
    ideal_backbone_local,
    psi_from_backbone,
    uniform_so3,
)

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
SHARED_PDB = Path(__file__).resolve().parents[1] / ".." / "shared" / "pdb"
# Well-refined crystal structures; frames from real N/CA/C with ideal geometry reproduce their atoms
# to within the spread of real bond angles (N-CA-C varies by a few degrees, ~0.1 A at N).
REAL_STRUCTURES = ["biotite/1aki.pdb", "biotite/5ugo.cif", "rfdiffusion/1qys.pdb"]
REAL_RMS_TOLERANCE_A = 0.1
REAL_MAX_TOLERANCE_A = 0.35


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return (torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref)).item()


def random_rigid(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> Rigid:
    generator = torch.Generator().manual_seed(seed)
    rots = uniform_so3(shape, torch.float64, generator=generator)
    trans = 20 * torch.randn(*shape, 3, dtype=torch.float64, generator=generator)
    return Rigid(rots, trans).to(dtype)


def angle_deg(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> float:
    u, v = a - b, c - b
    return math.degrees(torch.acos((u @ v) / (u.norm() * v.norm())).item())


def test_ideal_backbone_has_literature_bond_lengths_and_angles():
    n, ca, c, o = ideal_backbone_local(torch.float64).unbind(0)
    assert torch.equal(ca, torch.zeros(3, dtype=torch.float64))
    assert abs((n - ca).norm().item() - 1.458) < 0.005
    assert abs((c - ca).norm().item() - 1.525) < 0.005
    assert abs((o - c).norm().item() - 1.231) < 0.005
    assert abs(angle_deg(n, ca, c) - 111.0) < 0.5
    assert abs(angle_deg(ca, c, o) - 120.6) < 0.5


def test_frame_convention_puts_c_on_x_axis_and_n_in_the_xy_plane_with_positive_y():
    n, ca, c, _ = ideal_backbone_local(torch.float64).unbind(0)
    frame = frames_from_backbone(n, ca, c)
    assert rel_err(frame.rots, torch.eye(3, dtype=torch.float64)) < 1e-15
    assert torch.equal(frame.trans, ca)
    atoms = 3 * torch.randn(20, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    frames = frames_from_backbone(*atoms.unbind(-2))
    local = frames[:, None].invert_apply(atoms)  # [20, 3 atoms, 3]
    assert local[:, 1].abs().max() < 1e-13  # CA at the origin
    assert local[:, 2, 1:].abs().max() < 1e-13 and (local[:, 2, 0] > 0).all()  # C on +x
    assert local[:, 0, 2].abs().max() < 1e-13 and (local[:, 0, 1] > 0).all()  # N in xy, y > 0
    assert torch.allclose(torch.linalg.det(frames.rots), torch.ones(20, dtype=torch.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_frames_to_atoms_to_frames_round_trips(dtype):
    rigid = random_rigid((3, 17), dtype)
    psi = torch.rand(3, 17, dtype=dtype) * 2 * math.pi - math.pi
    atoms = backbone_atoms_from_frames(rigid, psi)  # [3, 17, 4, 3]
    assert atoms.shape == (3, 17, 4, 3) and atoms.dtype == dtype
    frames = frames_from_backbone(atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :])
    assert rel_err(frames.rots, rigid.rots) < TOL[dtype]
    assert rel_err(frames.trans, rigid.trans) < TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_psi_round_trips_through_oxygen_placement(dtype):
    rigid = random_rigid((40,), dtype, seed=1)
    psi = torch.linspace(-math.pi + 1e-3, math.pi - 1e-3, 40, dtype=dtype)
    n, ca, c, o = backbone_atoms_from_frames(rigid, psi).unbind(-2)
    assert rel_err(psi_from_backbone(n, ca, c, o), psi) < 10 * TOL[dtype]
    # The documented convention: dihedral(N, CA, C, O) = psi + pi.
    wrapped = torch.remainder(dihedral(n, ca, c, o) - psi, 2 * math.pi) - math.pi
    assert wrapped.abs().max() < 100 * TOL[dtype]


def test_psi_as_unnormalised_sin_cos_equals_psi_as_angle():
    rigid = random_rigid((2, 5), torch.float64, seed=2)
    psi = torch.randn(2, 5, dtype=torch.float64)
    sin_cos = 2.5 * torch.stack([torch.sin(psi), torch.cos(psi)], dim=-1)
    assert rel_err(backbone_atoms_from_frames(rigid, sin_cos), backbone_atoms_from_frames(rigid, psi)) < 1e-15


def test_default_psi_is_alpha_helix_and_matches_ideal_backbone_local():
    assert DEFAULT_PSI == pytest.approx(math.radians(-47.0))
    rigid = random_rigid((6,), torch.float64, seed=3)
    default = backbone_atoms_from_frames(rigid)
    assert (
        rel_err(default, backbone_atoms_from_frames(rigid, torch.full((6,), DEFAULT_PSI, dtype=torch.float64))) < 1e-15
    )
    identity_atoms = backbone_atoms_from_frames(Rigid.identity((), torch.float64))
    assert rel_err(identity_atoms, ideal_backbone_local(torch.float64)) < 1e-15


def test_frames_are_equivariant_under_global_rigid_motion():
    atoms = 3 * torch.randn(10, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    motion = random_rigid((), torch.float64, seed=5)
    frames = frames_from_backbone(*atoms.unbind(-2))
    moved = frames_from_backbone(*motion.apply(atoms).unbind(-2))
    expected = motion.compose(frames)
    assert rel_err(moved.rots, expected.rots) < 1e-13 and rel_err(moved.trans, expected.trans) < 1e-13


def test_degenerate_padded_residues_give_finite_frames_and_gradients():
    atoms = torch.zeros(4, 3, 3, dtype=torch.float32, requires_grad=True)
    frames = frames_from_backbone(*atoms.unbind(-2))
    assert torch.isfinite(frames.rots).all()
    frames.rots.sum().backward()
    assert torch.isfinite(atoms.grad).all()


def test_bad_psi_shape_is_rejected_with_the_expected_shapes():
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        backbone_atoms_from_frames(Rigid.identity((2, 5)), torch.zeros(2, 5, 3))


def test_dihedral_matches_biotite():
    structure = pytest.importorskip("biotite.structure")
    a, b, c, d = torch.randn(4, 32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6)).unbind(0)
    ref = torch.from_numpy(structure.dihedral(a.numpy(), b.numpy(), c.numpy(), d.numpy()))
    assert rel_err(dihedral(a, b, c, d), ref) < 1e-6  # biotite computes in float32


def load_backbone(relative_path: str) -> torch.Tensor:
    """N, CA, C, O [L, 4, 3] (float64) of the amino acids of model 1 that have all four atoms."""
    structure = pytest.importorskip("biotite.structure")
    structure_io = pytest.importorskip("biotite.structure.io")
    path = SHARED_PDB / relative_path
    if not path.exists():
        pytest.skip(f"{path} not present (../shared/pdb is absent in a fresh clone)")
    atoms = structure_io.load_structure(str(path), model=1)
    atoms = atoms[structure.filter_amino_acids(atoms)]
    residues = []
    for residue in structure.residue_iter(atoms):
        names = list(residue.atom_name)
        if all(name in names for name in ("N", "CA", "C", "O")):
            residues.append([residue.coord[names.index(name)] for name in ("N", "CA", "C", "O")])
    return torch.from_numpy(numpy.array(residues, dtype=numpy.float64))


@pytest.mark.parametrize("relative_path", REAL_STRUCTURES)
def test_real_backbones_are_reproduced_from_their_frames_and_psi(relative_path):
    backbone = load_backbone(relative_path)  # [L, 4, 3]
    n, ca, c, o = backbone.unbind(-2)
    atoms = backbone_atoms_from_frames(frames_from_backbone(n, ca, c), psi_from_backbone(n, ca, c, o))
    error = (atoms - backbone).norm(dim=-1)  # [L, 4]
    assert error[:, 1].max() < 1e-12  # CA is the frame origin
    assert (error.pow(2).mean(0).sqrt() < REAL_RMS_TOLERANCE_A).all(), error.pow(2).mean(0).sqrt()
    assert error.max() < REAL_MAX_TOLERANCE_A


def test_constants_made_under_inference_mode_still_train():
    """The ideal-geometry constants are cached per dtype and device; a first call from sampling
    (inference mode) must not hand training inference tensors that autograd cannot save."""
    from flashipa_train.geometry import backbone

    backbone._ideal_constants.cache_clear()  # the call under inference mode below makes the cache entry
    dtype = torch.float64
    rigid = Rigid(torch.eye(3, dtype=dtype).expand(5, 3, 3), torch.randn(5, 3, dtype=dtype))
    with torch.inference_mode():
        backbone_atoms_from_frames(rigid, torch.randn(5, 2, dtype=dtype))
    psi = torch.randn(5, 2, dtype=dtype, requires_grad=True)
    backbone_atoms_from_frames(rigid, psi).square().sum().backward()
    assert torch.isfinite(psi.grad).all() and psi.grad.abs().sum() > 0
