"""The model's noisy inputs as a typed dict: what the flow matcher hands to `FlowModel.forward`."""

from typing import TypedDict

import torch


class _RequiredNoisyInputs(TypedDict):
    trans_t: torch.Tensor  # [B, L, 3] noisy CA positions, Angstrom
    rots_t: torch.Tensor  # [B, L, 3, 3] noisy frame rotations
    t: torch.Tensor  # [B] flow time (1 = data)
    res_mask: torch.Tensor  # [B, L] bool (or 0/1)
    residue_index: torch.Tensor  # [B, L] long
    chain_index: torch.Tensor  # [B, L] long


class NoisyInputs(_RequiredNoisyInputs, total=False):
    """Keys above always; these two optional:

    trans_sc: [B, L, 3] self-conditioning CA positions, Angstrom
    all_real: res_mask is all True, decided once where the batch is made (on the CPU: the data module's
              batch before it moves to the device, or the sampler's lengths); the sdpa attention then runs
              unmasked without reading the mask on the device. Absent: the attention reads it once per forward.
    """

    trans_sc: torch.Tensor
    all_real: bool
