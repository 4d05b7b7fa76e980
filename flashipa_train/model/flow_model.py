"""FlowModel: the denoiser of SE(3) flow matching (FrameFlow's architecture with a choice of IPA variant).

Given noisy frames (rots_t, trans_t) at time t it predicts the clean frames, psi and backbone atoms:

    s0     = NodeEmbedder(t, residue index, chain) + NeighbourFeatures(kNN / sequence window, O(L k))
    (flash variants: + x_sc points in attention and sparse edge messages every block, attention_flash.py)
    state  = attention.prepare(s0, input frames)          # dense: pair rep z; flash: pair factors
    for each block b:
        s  = LayerNorm(s + IPA_b(s, frames, state))
        s  = SequenceTransformer_b(s)                     # optional (seq_transformer_layers > 0)
        s  = Transition_b(s)
        frames = frames o BackboneUpdate_b(s)             # gradient flows through every block's update
        state  = attention.after_block(b, s, state)       # dense: edge transition
    atoms = backbone_atoms_from_frames(frames, PsiHead(s))

Units: the interface speaks Angstrom; inside the trunk translations are in nanometres (x 0.1, as
FrameFlow), so IPA points and backbone updates work at the scale of a few units.

The attention variant is a small class picked by `attention["name"]`, built with the shared `IPASizes` and
its own fields (attention_variants.py).
"""

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from flashipa_train.geometry import Rigid, backbone_atoms_from_frames
from flashipa_train.geometry.precision import geometry_dtype, geometry_precision
from flashipa_train.geometry.units import ANGSTROM_TO_NM, NM_TO_ANGSTROM
from flashipa_train.model.attention_variants import build_attention
from flashipa_train.model.embeddings import NodeEmbedder
from flashipa_train.model.inputs import NoisyInputs
from flashipa_train.model.neighbours import NeighbourFeatures
from flashipa_train.model.sizes import IPASizes
from flashipa_train.model.trunk_layers import BackboneUpdate, PsiHead, SequenceTransformer, Transition


class FlowModel(nn.Module):
    """Predicts clean frames, psi and backbone atoms from noisy frames (see the module docstring).

    Args:
        attention:              {"name": a variant of ATTENTION_VARIANTS, then its own fields: "backend",
                                 dense_ipa's c_z, the flash family's pair_rank and c_pair_value, ...}
        c_s:                    single representation channels
        c_hidden:               IPA scalar channels per head
        num_blocks:             trunk blocks
        num_heads:              IPA heads
        num_qk_points:          IPA query/key points per head
        num_v_points:           IPA value points per head
        seq_transformer_layers: encoder layers per block (0: no sequence transformer)
        seq_transformer_heads:  heads of the sequence transformer
        knn:                    neighbours per residue of the node neighbour features
        dropout:                dropout in the transitions and the sequence transformer
        checkpoint_blocks:      the first this many trunk blocks keep only their inputs in training and
                                run again in the backward (torch.utils.checkpoint): activation memory
                                of a long chain falls by about that fraction of the trunk's, for one more
                                forward of those blocks (0: none, num_blocks: all; "auto": 0 until training
                                starts, then chosen from the GPU's free memory, train/auto_checkpoint.py)
    """

    def __init__(
        self,
        attention: Mapping,
        c_s=256,
        c_hidden=128,
        num_blocks=6,
        num_heads=8,
        num_qk_points=8,
        num_v_points=12,
        seq_transformer_layers=2,
        seq_transformer_heads=4,
        knn=16,
        dropout=0.0,
        checkpoint_blocks: int | str = 0,
    ):
        super().__init__()
        if checkpoint_blocks == "auto":
            checkpoint_blocks = 0
        if not isinstance(checkpoint_blocks, int) or not 0 <= checkpoint_blocks <= num_blocks:
            raise ValueError(
                f"model.checkpoint_blocks={checkpoint_blocks!r}: pick 0 .. num_blocks ({num_blocks}) or auto"
            )
        self.num_blocks = num_blocks
        self.checkpoint_blocks = checkpoint_blocks
        self.node_embedder = NodeEmbedder(c_s)
        self.neighbour_features = NeighbourFeatures(c_s, k=knn)
        sizes = IPASizes(c_s, c_hidden, num_heads, num_qk_points, num_v_points, num_blocks)
        self.attention = build_attention(attention, sizes)
        self.ipa_layer_norms = nn.ModuleList(nn.LayerNorm(c_s) for _ in range(num_blocks))
        self.seq_transformers = nn.ModuleList(
            SequenceTransformer(c_s, seq_transformer_layers, seq_transformer_heads, dropout)
            for _ in range(num_blocks if seq_transformer_layers > 0 else 0)
        )
        self.transitions = nn.ModuleList(Transition(c_s, dropout) for _ in range(num_blocks))
        self.backbone_updates = nn.ModuleList(BackboneUpdate(c_s) for _ in range(num_blocks))
        self.psi_head = PsiHead(c_s)

    def _block(self, b, s, rigids, res_mask, padding, state):
        """Trunk block b: s [B, L, c_s], rigids [B, L] (nm) -> the same after IPA, transitions and the update;
        padding [B, L] (~res_mask) or None when the batch has none."""
        # [B, L, c_s]
        s = self.ipa_layer_norms[b](s + self.attention(b, s, rigids, res_mask, state))
        if self.seq_transformers:
            s = self.seq_transformers[b](s, padding)
        s = self.transitions[b](s) * res_mask[..., None].to(s.dtype)
        # No stop of the rotation gradient between blocks: AlphaFold2 stops it only because every block
        # also gets its own auxiliary FAPE loss; with the loss on the last frames alone, a stop leaves the
        # rotation rows of blocks 0 .. N-2 with exactly zero gradient (their frames never learn to turn).
        rigids = self.backbone_updates[b](s, rigids, res_mask)
        if b < self.num_blocks - 1:
            state = self.attention.after_block(b, s, res_mask, state)
        return s, rigids, state

    def forward(self, noisy: NoisyInputs) -> dict[str, Any]:
        """
        Args:
            noisy: `NoisyInputs` (model/inputs.py): noisy frames (Angstrom), t, masks and indices, optionally
                   the self-conditioning positions and `all_real` (the batch has no padding)
        Returns:
            pred_trans [B, L, 3] Angstrom, pred_rots [B, L, 3, 3], pred_psi [B, L, 2] (unit sin, cos),
            pred_atoms [B, L, 4, 3] Angstrom (N, CA, C, O)
        """
        res_mask = noisy["res_mask"].bool()
        inputs: NoisyInputs = {**noisy, "res_mask": res_mask}
        dtype = geometry_dtype(noisy["trans_t"])
        # [B, L] frames in nm, float32 (float64 in tests) whatever the autocast
        rigids_in = Rigid(noisy["rots_t"].to(dtype), noisy["trans_t"].to(dtype) * ANGSTROM_TO_NM)

        # [B, L, c_s]
        s0 = self.node_embedder(noisy["t"].to(dtype), noisy["residue_index"], noisy["chain_index"], res_mask)
        s0 = s0 + self.neighbour_features(
            noisy["trans_t"], noisy.get("trans_sc"), noisy["residue_index"], noisy["chain_index"], res_mask
        )
        state = self.attention.prepare(s0, rigids_in, inputs)

        padding = None if noisy.get("all_real") else ~res_mask  # [B, L] or None (the sequence transformer's mask)
        s, rigids = s0, rigids_in
        for b in range(self.num_blocks):
            if b < self.checkpoint_blocks and torch.is_grad_enabled():
                s, rigids, state = checkpoint(self._block, b, s, rigids, res_mask, padding, state, use_reentrant=False)
            else:
                s, rigids, state = self._block(b, s, rigids, res_mask, padding, state)

        rigids = rigids.scale_translation(NM_TO_ANGSTROM)
        # [B, L, 2]
        psi = self.psi_head(s)
        with geometry_precision(psi):
            psi = psi.to(dtype)
            psi = psi / torch.sqrt(psi.square().sum(-1, keepdim=True) + 1e-8)
            atoms = backbone_atoms_from_frames(rigids, psi)  # [B, L, 4, 3]
        return {
            "pred_trans": rigids.trans,  # [B, L, 3]
            "pred_rots": rigids.rots,  # [B, L, 3, 3]
            "pred_psi": psi,  # [B, L, 2]
            "pred_atoms": atoms,  # [B, L, 4, 3]
        }
