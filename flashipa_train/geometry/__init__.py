"""Rigid-body geometry for protein backbones: quaternions, SO(3) maps, `Rigid` frames, AF2 backbone.

Everything works in float32 and float64 and batches over arbitrary leading dims; no eigh or SVD.
"""

from flashipa_train.geometry.backbone import (
    DEFAULT_PSI,
    backbone_atoms_from_frames,
    dihedral,
    frames_from_backbone,
    ideal_backbone_local,
    psi_from_backbone,
)
from flashipa_train.geometry.centring import centre, centre_rigid, masked_mean
from flashipa_train.geometry.quaternion import quat_multiply, quat_to_rotmat, rotmat_to_quat
from flashipa_train.geometry.rigid import Rigid, rotmat_mul
from flashipa_train.geometry.so3 import (
    hat,
    rotation_angle,
    so3_exp,
    so3_geodesic_interpolate,
    so3_log,
    uniform_so3,
    vee,
)

__all__ = [
    "DEFAULT_PSI",
    "Rigid",
    "backbone_atoms_from_frames",
    "centre",
    "centre_rigid",
    "dihedral",
    "frames_from_backbone",
    "hat",
    "ideal_backbone_local",
    "masked_mean",
    "psi_from_backbone",
    "quat_multiply",
    "quat_to_rotmat",
    "rotation_angle",
    "rotmat_mul",
    "rotmat_to_quat",
    "so3_exp",
    "so3_geodesic_interpolate",
    "so3_log",
    "uniform_so3",
    "vee",
]
