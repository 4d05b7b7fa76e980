"""flash_ipa and inattention never form an L x L tensor (forward + backward + flow losses); dense_ipa does."""

import pytest
import torch

from flashipa_train.flow import FlowMatcher
from flashipa_train.geometry import Rigid, backbone_atoms_from_frames, uniform_so3
from flashipa_train.largest_tensor import LargestTensor
from flashipa_train.model import FlowModel, variant_fields

MICRO = dict(
    c_s=16,
    c_hidden=4,
    num_blocks=2,
    num_heads=2,
    num_qk_points=2,
    num_v_points=2,
    seq_transformer_layers=1,
    seq_transformer_heads=2,
    knn=4,
)

MICRO_PAIR = dict(pair_rank=2, c_pair_value=4)  # the flash family's own fields at micro size


def random_batch(L, g):
    frames = Rigid(uniform_so3((1, L), generator=g), torch.randn(1, L, 3, generator=g) * 10)
    return {
        "atoms": backbone_atoms_from_frames(frames),
        "atom_mask": torch.ones(1, L, 4, dtype=torch.bool),
        "res_mask": torch.ones(1, L, dtype=torch.bool),
        "residue_index": torch.arange(L)[None],
        "chain_index": torch.zeros(1, L, dtype=torch.long),
    }


def largest_tensor_of_a_training_step(name, L, self_condition_prob):
    g = torch.Generator().manual_seed(0)
    if "c_z" in variant_fields(name):
        attention = {"name": name, "c_z": 4}
    else:
        # edge messages hold B x L x k x c_edge: linear in L, sized here like the other micro widths
        attention = {"name": name, "backend": "torch", **MICRO_PAIR, "edge_neighbours": 4, "c_edge": 8}
        attention["content_relpos"] = True
    model = FlowModel(attention, **MICRO)
    flow = FlowMatcher(self_condition_prob=self_condition_prob, local_loss_t_threshold=0.0)
    batch = random_batch(L, g)
    with LargestTensor() as record:
        flow.training_loss(model, batch, generator=g)["loss"].backward()
    return record


@pytest.mark.slow
# kNN neighbours (self-conditioning) for flash_ipa, sequence-window neighbours for inattention
@pytest.mark.parametrize("name,self_condition_prob", [("flash_ipa", 1.0), ("inattention", 0.0)])
def test_flash_variants_form_no_length_squared_tensor_at_2048(name, self_condition_prob):
    L = 2048
    record = largest_tensor_of_a_training_step(name, L, self_condition_prob)
    assert record.numel < L * L // 4, f"{record.op} made a tensor of {record.numel} elements (L^2 = {L * L})"


def test_dense_variant_forms_a_length_squared_tensor():
    L = 96
    record = largest_tensor_of_a_training_step("dense_ipa", L, 0.0)
    assert record.numel >= L * L
