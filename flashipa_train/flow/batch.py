"""The training batch as the flow matcher reads it: a typed view of the data module's batch dict."""

from typing import TypedDict

import torch


class _RequiredTrainBatch(TypedDict):
    atoms: torch.Tensor  # [B, L, 4, 3] N, CA, C, O, Angstrom (zero at padding)
    atom_mask: torch.Tensor  # [B, L, 4] bool
    res_mask: torch.Tensor  # [B, L] bool
    residue_index: torch.Tensor  # [B, L] long
    chain_index: torch.Tensor  # [B, L] long


class TrainBatch(_RequiredTrainBatch, total=False):
    """Keys above always (and others the flow matcher does not read); optional:

    all_real: res_mask is all True, read once while the batch is still on the CPU (FlowModule's
              on_before_batch_transfer); the flow matcher hands it to the model as `NoisyInputs.all_real`.
    """

    all_real: bool
