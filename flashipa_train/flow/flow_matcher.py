"""FlowMatcher: training loss and Euler sampler of SE(3) flow matching on residue frames (FrameFlow-style)."""

from collections.abc import Sequence

import numpy as np
import torch

from flashipa_train.flow.batch import TrainBatch
from flashipa_train.flow.interpolant import clean_frames, interpolate, mask_frames, rand, sample_prior
from flashipa_train.flow.losses import backbone_atom_loss, local_distance_loss, rotation_vf_loss, translation_vf_loss
from flashipa_train.geometry import centre, so3_geodesic_interpolate
from flashipa_train.geometry.precision import geometry_dtype, geometry_precision
from flashipa_train.model.inputs import NoisyInputs

ROT_SCHEDULES = ("linear", "exp")
_SELF_CONDITION_STREAM = 0x5C  # tags the self-conditioning coin's stream apart from the noise of the step


class FlowMatcher:
    """Corrupts clean backbones, computes the losses, and integrates the learned flow from the prior.

    Args:
        trans_prior_std:        std of the Gaussian translation prior, Angstrom
        t_min:                  t ~ U[t_min, 1] in training; sampling starts at t_min
        self_condition_prob:    probability per batch of a no-grad first pass whose predicted translations
                                are fed back as trans_sc
        trans_loss_weight:      weight of the translation vector-field loss
        rot_loss_weight:        weight of the rotation vector-field loss
        atom_loss_weight:       weight of the backbone-atom loss (late t only)
        local_dist_loss_weight: weight of the local pairwise-distance loss (late t only)
        local_loss_t_threshold: the atom and local-distance losses count only where t > this
        local_window:           residues i, j with 1 <= |i - j| <= local_window enter the distance loss
        rot_schedule:           sampler's rotation schedule: "linear" moves rots_t towards the prediction at
                                rate 1 / (1 - t) (the true geodesic flow); "exp" at the constant rate
                                rot_exp_rate (FrameFlow's exponential schedule: rotations settle early)
        rot_exp_rate:           rate of the "exp" schedule
        sample_self_condition:  feed each sampler step's predicted translations to the next step (only when
                                the model was trained with self-conditioning, self_condition_prob > 0)
    """

    def __init__(
        self,
        trans_prior_std=10.0,
        t_min=0.01,
        self_condition_prob=0.5,
        trans_loss_weight=2.0,
        rot_loss_weight=1.0,
        atom_loss_weight=1.0,
        local_dist_loss_weight=1.0,
        local_loss_t_threshold=0.75,
        local_window=4,
        rot_schedule="exp",
        rot_exp_rate=10.0,
        sample_self_condition=True,
    ):
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"flow.t_min={t_min} must be in [0, 1)")
        if rot_schedule not in ROT_SCHEDULES:
            raise ValueError(f"flow.rot_schedule={rot_schedule!r} is not one of {ROT_SCHEDULES}")
        self.trans_prior_std = trans_prior_std
        self.t_min = t_min
        self.self_condition_prob = self_condition_prob
        self.trans_loss_weight = trans_loss_weight
        self.rot_loss_weight = rot_loss_weight
        self.atom_loss_weight = atom_loss_weight
        self.local_dist_loss_weight = local_dist_loss_weight
        self.local_loss_t_threshold = local_loss_t_threshold
        self.local_window = local_window
        self.rot_schedule = rot_schedule
        self.rot_exp_rate = rot_exp_rate
        self.sample_self_condition = sample_self_condition

    # Training

    def corrupt(self, rots_1, trans_1, res_mask, generator=None):
        """Noisy frames at t ~ U[t_min, 1]: dict of t [B], rots_t [B, L, 3, 3], trans_t [B, L, 3]."""
        B = res_mask.shape[0]
        t = self.t_min + (1 - self.t_min) * rand((B,), generator, res_mask.device, trans_1.dtype)
        rots_0, trans_0 = sample_prior(res_mask, self.trans_prior_std, generator, trans_1.dtype)
        rots_t, trans_t = interpolate(rots_0, trans_0, rots_1, trans_1, t, res_mask)
        return {"t": t, "rots_t": rots_t, "trans_t": trans_t}

    def losses(self, pred, rots_1, trans_1, atoms_1, atom_mask, noisy):
        """Per-example losses [B] and the total: dict of "loss" (scalar) and the unweighted batch means."""
        res_mask = noisy["res_mask"].bool()
        t = noisy["t"]
        pred = {k: v.to(trans_1.dtype) for k, v in pred.items()}
        trans = translation_vf_loss(pred["pred_trans"], trans_1, t, res_mask)
        rot = rotation_vf_loss(pred["pred_rots"], rots_1, noisy["rots_t"], t, res_mask)
        atom_mask = atom_mask.bool() & res_mask[..., None]
        atom = backbone_atom_loss(pred["pred_atoms"], atoms_1, atom_mask)
        local = local_distance_loss(pred["pred_atoms"], atoms_1, atom_mask, self.local_window)
        late = (t > self.local_loss_t_threshold).to(trans.dtype)  # [B]
        total = (
            self.trans_loss_weight * trans
            + self.rot_loss_weight * rot
            + late * (self.atom_loss_weight * atom + self.local_dist_loss_weight * local)
        )
        return {
            "loss": total.mean(),
            "trans_loss": trans.mean(),
            "rot_loss": rot.mean(),
            "atom_loss": atom.mean(),
            "local_dist_loss": local.mean(),
            "t_mean": t.mean(),
        }

    def training_loss(self, model, batch: TrainBatch, generator=None) -> dict[str, torch.Tensor]:
        """One flow-matching loss on a clean batch (keys of the data module's batches).

        Returns {"loss", "trans_loss", "rot_loss", "atom_loss", "local_dist_loss", "t_mean"} (scalars).
        The atom and local losses reported are means over all examples; the total counts them only
        for examples with t > local_loss_t_threshold.
        """
        res_mask = batch["res_mask"].bool()
        atoms = batch["atoms"]
        with geometry_precision(atoms):  # frames and noise in float32 even under bf16 autocast
            atoms = atoms.to(geometry_dtype(atoms))
            rots_1, trans_1 = clean_frames(atoms, res_mask)
            # the data in the same centred coordinates as trans_1
            _, ca_centre = centre(atoms[..., 1, :], res_mask)  # [B, 3]
            atoms_1 = atoms - ca_centre[:, None, None, :]
            corrupted = self.corrupt(rots_1, trans_1, res_mask, generator)
            noisy: NoisyInputs = {
                "t": corrupted["t"],
                "rots_t": corrupted["rots_t"],
                "trans_t": corrupted["trans_t"],
                "res_mask": res_mask,
                "residue_index": batch["residue_index"],
                "chain_index": batch["chain_index"],
            }
            if "all_real" in batch:
                noisy["all_real"] = batch["all_real"]
        if self.self_condition_prob > 0 and self._self_condition_coin(generator) < self.self_condition_prob:
            with torch.no_grad():
                # a copy: under CUDA graphs (compile mode reduce-overhead) the next model call reuses the
                # memory of this call's outputs
                noisy["trans_sc"] = model(noisy)["pred_trans"].detach().clone()
        pred = model(noisy)
        with geometry_precision(atoms):
            return self.losses(pred, rots_1, trans_1, atoms_1, batch["atom_mask"], noisy)

    @staticmethod
    def _self_condition_coin(generator):
        """Uniform [0, 1) draw that decides self-conditioning, independent of the step's t and prior.

        Drawn on the CPU (a GPU draw would need a host sync every step) from a stream of its own: numpy's
        SeedSequence of (the step's seed, a stream tag). A torch CPU generator seeded with the step's own
        seed would repeat the draw of t on CPU runs (then self-conditioning happened only for small t).
        """
        if generator is None:
            return torch.rand(()).item()
        return float(np.random.default_rng([generator.initial_seed(), _SELF_CONDITION_STREAM]).random())

    # Sampling

    @torch.no_grad()
    def sample(
        self, model, lengths: Sequence[int], num_steps=100, device=None, generator=None
    ) -> dict[str, torch.Tensor]:
        """Euler integration of the learned flow from the prior, one chain per entry of `lengths`.

        Uses the model as it is (the caller picks train/eval mode and EMA weights).
        Returns {"atoms": [B, L_max, 4, 3] Angstrom (zero at padding), "res_mask": [B, L_max] bool,
        "trans": [B, L_max, 3], "rots": [B, L_max, 3, 3]}.
        """
        param = next(model.parameters())
        device = param.device if device is None else torch.device(device)
        dtype = geometry_dtype(param)
        B, L = len(lengths), max(lengths)
        res_mask = torch.arange(L, device=device)[None] < torch.as_tensor(lengths, device=device)[:, None]
        residue_index = torch.arange(L, device=device).expand(B, L)
        chain_index = torch.zeros(B, L, dtype=torch.long, device=device)
        all_real = min(lengths) == L  # known here: the sdpa attention needs no device read per step

        def inputs_at(
            t: float, rots_t: torch.Tensor, trans_t: torch.Tensor, trans_sc: torch.Tensor | None
        ) -> NoisyInputs:
            noisy: NoisyInputs = {
                "t": torch.full((B,), t, dtype=dtype, device=device),
                "rots_t": rots_t,
                "trans_t": trans_t,
                "res_mask": res_mask,
                "residue_index": residue_index,
                "chain_index": chain_index,
                "all_real": all_real,
            }
            if trans_sc is not None:
                noisy["trans_sc"] = trans_sc
            return noisy

        rots_t, trans_t = sample_prior(res_mask, self.trans_prior_std, generator, dtype)
        ts = torch.linspace(self.t_min, 1.0, num_steps + 1, dtype=torch.float64).tolist()
        trans_sc = None
        for t_now, t_next in zip(ts[:-1], ts[1:]):
            dt = t_next - t_now
            pred = model(inputs_at(t_now, rots_t, trans_t, trans_sc))
            if self.sample_self_condition and self.self_condition_prob > 0:
                trans_sc = pred["pred_trans"].clone()  # outlives the next model call (CUDA graphs)
            with geometry_precision(trans_t):
                # straight line towards the predicted clean translations
                trans_t = trans_t + (pred["pred_trans"].to(dtype) - trans_t) * (dt / (1 - t_now))
                rot_rate = 1 / (1 - t_now) if self.rot_schedule == "linear" else self.rot_exp_rate
                rots_t = so3_geodesic_interpolate(rots_t, pred["pred_rots"].to(dtype), min(rot_rate * dt, 1.0))
                rots_t, trans_t = mask_frames(rots_t, trans_t, res_mask)
        pred = model(inputs_at(1.0, rots_t, trans_t, trans_sc))
        rots, trans = mask_frames(pred["pred_rots"].to(dtype), pred["pred_trans"].to(dtype), res_mask)
        atoms = pred["pred_atoms"].to(dtype) * res_mask[..., None, None].to(dtype)
        return {"atoms": atoms, "res_mask": res_mask, "trans": trans, "rots": rots}
