"""Every trunk block's backbone update learns rotations (no gradient stop between blocks without per-block losses)."""

import torch
from test_model_forward import tiny_attention

from flashipa_train.flow import FlowMatcher
from flashipa_train.geometry import uniform_so3
from flashipa_train.model import FlowModel

TINY = dict(
    c_s=32,
    c_hidden=8,
    num_blocks=3,
    num_heads=2,
    num_qk_points=2,
    num_v_points=3,
    seq_transformer_layers=0,
    knn=4,
)


def test_rotation_rows_of_every_block_receive_gradient():
    for name in ("dense_ipa", "flash_ipa"):
        torch.manual_seed(0)
        model = FlowModel(tiny_attention(name), **TINY)
        g = torch.Generator().manual_seed(0)
        B, L = 2, 10
        rots_1 = uniform_so3((B, L), generator=g)
        trans_1 = torch.randn(B, L, 3, generator=g) * 5
        res_mask = torch.ones(B, L, dtype=torch.bool)
        noisy = {
            **FlowMatcher().corrupt(rots_1, trans_1, res_mask, g),
            "res_mask": res_mask,
            "residue_index": torch.arange(L).expand(B, L),
            "chain_index": torch.zeros(B, L, dtype=torch.long),
        }
        pred = model(noisy)
        FlowMatcher().losses(pred, rots_1, trans_1, pred["pred_atoms"].detach(), torch.ones(B, L, 4), noisy)[
            "rot_loss"
        ].backward()
        for b, update in enumerate(model.backbone_updates):
            # rows 0..2 of the (zero-initialised) update are the quaternion's vector part (rotation)
            rot_grad = update.linear.weight.grad[:3].abs().sum()
            assert rot_grad > 0, f"{name}: block {b}'s rotation update gets no gradient"
