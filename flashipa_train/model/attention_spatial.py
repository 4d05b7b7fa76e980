"""spatial_ipa: IPA attending exactly over each residue's spatial neighbours (sub-quadratic, issue #20).

Pair information as in flash_ipa (low-rank `PairFactors` from s0, shared by the blocks). In every block
the key list of residue i is rebuilt from the block's current frame translations with a cell list
(`cell_list.spatial_neighbour_lists`): i itself, its k nearest residues within `radius` and its
sequence window; the
attention is exact over that list (Triton kernels on CUDA, a gathered PyTorch reference on CPU) and,
with `far_field`, every cell of keys beyond the kNN radius is seen as one aggregated key
(kernels/spatial_ipa/far_field.py). Cost O(L (1 + k + 2 window)) per block, plus O(L x cells) with the
far field.

Early in sampling the frames are noise: the prior's cloud (10 A per coordinate) is far denser than a
protein, so cells overflow `max_per_cell`, each residue attends to the k nearest of an evenly strided
subset of its neighbourhood (still local), and the far field, if on, summarises the rest. The measured
mass outside the lists at t = 0.1 is in docs/spatial_sparsity.md.
"""

from typing import NamedTuple

import torch
import torch.nn as nn

from flashipa_kernels.backends import check_backend
from flashipa_kernels.spatial_ipa.ipa import spatial_ipa_attention
from flashipa_train.geometry import Rigid
from flashipa_train.model.attention_interface import AttentionVariant
from flashipa_train.model.cell_list import spatial_neighbour_lists
from flashipa_train.model.inputs import NoisyInputs
from flashipa_train.model.ipa import IPAProjections
from flashipa_train.model.pair_factors import PairFactorEmbedder, PairFactors
from flashipa_train.model.sizes import IPASizes


class SpatialIPA(IPAProjections):
    """IPA over per-residue key lists with the pair bias and pair values given as `PairFactors`."""

    def forward(self, s, rigids, factors: PairFactors, res_mask, neighbours, backend="torch", far_cell_size=None):
        """
        Args:
            s:             [B, L, c_s]
            rigids:        [B, L] frames (nm)
            factors:       pair factors
            res_mask:      [B, L] bool
            neighbours:    `NeighbourLists` of this block's frames
            backend:       "triton" or "torch"
            far_cell_size: far-field cell edge (nm), None: no far field
        Returns:
            [B, L, c_s]
        """
        q, q_pts = self.queries(s, rigids)
        kv = self.keys_values(s, rigids)
        # [B, L, H, C], [B, L, H, P_v, 3], [B, L, H, R, C_pv]
        o, o_pts, o_pair_r = spatial_ipa_attention(
            q,
            kv["k"],
            kv["v"],
            q_pts,
            kv["k_pts"],
            kv["v_pts"],
            factors.bias_q,
            factors.bias_k,
            factors.pair_k,
            self.point_weights(),
            res_mask,
            neighbours,
            ca=rigids.trans,
            backend=backend,
            far_cell_size=far_cell_size,
        )
        # [B, L, H, C_pv]
        o_pair = torch.einsum("birc,bihrc->bihc", factors.pair_q.to(o_pair_r.dtype), o_pair_r)
        return self.output(o, o_pts, o_pair, rigids, res_mask)


class SpatialState(NamedTuple):
    """What spatial_ipa's blocks share, built once per forward by `prepare` (the key lists are per block)."""

    factors: PairFactors  # pair factors from s0
    backend: str  # resolved: "triton" or "torch"
    residue_index: torch.Tensor  # [B, L] long
    chain_index: torch.Tensor  # [B, L] long


class SpatialIPAAttention(AttentionVariant[SpatialState]):
    """The trunk's attention for `spatial_ipa`.

    Args:
        sizes:         the shared IPA sizes
        pair_rank:     rank of the learned pair-bias and pair-value factors
        c_pair_value:  channels of the pair values
        backend:       "auto" (triton on CUDA, torch elsewhere), "triton" or "torch"
        k:             nearest residues per list (by the block's frame translations)
        window:        sequence neighbours on each side
        radius:        nm: the lists hold the k nearest within this distance (the cell edge of the search)
        max_per_cell:  candidates taken from one cell (strided subset beyond: noise frames)
        far_field:     summarise keys beyond the kNN radius by cell (O(L x cells))
        far_cell_size: far-field cell edge, nm
    """

    backends = ("auto", "triton", "torch")

    def __init__(
        self,
        sizes: IPASizes,
        *,
        pair_rank=2,
        c_pair_value=32,
        backend="auto",
        k=32,
        window=8,
        radius=1.2,
        max_per_cell=64,
        far_field=False,
        far_cell_size=1.0,
    ):
        super().__init__()
        if backend not in self.backends:
            check_backend(backend)
            raise ValueError(f"model.attention.backend={backend!r}: spatial_ipa runs 'auto', 'triton' or 'torch'")
        if k < 1 or window < 0 or radius <= 0 or max_per_cell < 1 or far_cell_size <= 0:
            raise ValueError(
                f"model.attention: k={k}, window={window}, radius={radius}, max_per_cell={max_per_cell}, "
                f"far_cell_size={far_cell_size}; need k >= 1, window >= 0, radius > 0, max_per_cell >= 1, "
                "far_cell_size > 0 (configs/model/attention/spatial_ipa.yaml)"
            )
        self.backend = backend
        self.k, self.window, self.radius, self.max_per_cell = k, window, radius, max_per_cell
        self.far_cell_size = far_cell_size if far_field else None
        self.pair_factors = PairFactorEmbedder(sizes.c_s, sizes.num_heads, pair_rank, c_pair_value)
        self.ipa = nn.ModuleList(
            SpatialIPA(
                sizes.c_s, c_pair_value, sizes.c_hidden, sizes.num_heads, sizes.num_qk_points, sizes.num_v_points
            )
            for _ in range(sizes.num_blocks)
        )

    def prepare(self, s0: torch.Tensor, rigids_in: Rigid, inputs: NoisyInputs) -> SpatialState:
        factors = self.pair_factors(s0, inputs["residue_index"], inputs["chain_index"], inputs["res_mask"])
        backend = self.backend if self.backend != "auto" else ("triton" if s0.is_cuda else "torch")
        return SpatialState(factors, backend, inputs["residue_index"], inputs["chain_index"])

    def forward(self, block: int, s: torch.Tensor, rigids: Rigid, res_mask: torch.Tensor, state: SpatialState):
        neighbours = spatial_neighbour_lists(
            rigids.trans,
            res_mask,
            state.residue_index,
            state.chain_index,
            self.k,
            self.window,
            self.radius,
            self.max_per_cell,
        )
        return self.ipa[block](s, rigids, state.factors, res_mask, neighbours, state.backend, self.far_cell_size)
