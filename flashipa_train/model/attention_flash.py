"""flash_ipa: IPA with low-rank pair factors on a backend of `flashipa_kernels.backends`; O(L) memory.

Geometry of the noisy and self-conditioned frames reaches the flash trunk in two ways besides IPA's own
points (which follow the current frames block by block), each switchable for ablations:

  sc_points      the self-conditioned CA positions x_sc (nm) times a learned per-head scale a_h, appended
                 as one more query and key point of every head: the kernel's existing point term then adds
                 -w_h a_h^2 / 2 |x_sc_i - x_sc_j|^2 to the logits, a per-head Gaussian of the x_sc
                 distance, exact and without an L x L tensor (zeros without self-conditioning: no effect)
  edge_messages  `EdgeMessages` on a sparse neighbour graph (sequence window + kNN): FrameFlow's edge
                 features (distances of x_t, x_sc and the current frames, relative position and
                 orientation) turned into an O(L k) message update of s in every block

and one way for the pair bias to follow the block's state, as dense IPA's edge transition does:

  content_relpos `ContentRelposBias` per block: a relative-position bias whose per-head weights are read
                 from the query's current s_i, exact low-rank factors appended to the static ones
"""

import math
from typing import NamedTuple

import torch
import torch.nn as nn

from flashipa_kernels.backends import check_backend, resolve_backend
from flashipa_train.geometry import Rigid
from flashipa_train.geometry.units import ANGSTROM_TO_NM
from flashipa_train.model.attention_interface import AttentionVariant
from flashipa_train.model.edge_messages import EdgeGraph, EdgeMessages, build_edge_graph
from flashipa_train.model.inputs import NoisyInputs
from flashipa_train.model.ipa import FactorizedIPA
from flashipa_train.model.pair_factors import PairFactorEmbedder, PairFactors
from flashipa_train.model.relpos_bias import ContentRelposBias
from flashipa_train.model.sizes import IPASizes


class FlashState(NamedTuple):
    """What the flash family's blocks share, built once per forward by `prepare`."""

    factors: PairFactors  # static pair factors from s0
    backend: str  # resolved: "torch", "sdpa", "triton" or "triton_fp8"
    all_real: bool  # attention runs without a mask: the sdpa backend on a batch without padding
    index_sinusoids: tuple[torch.Tensor, torch.Tensor] | None = None  # content_relpos: ([B, L, F], [B, L, F])
    shared_points: torch.Tensor | None = None  # sc_points: [B, L, H, 1, 3] nm
    edge_graph: EdgeGraph | None = None  # edge_messages
    keys_values: list[dict[str, torch.Tensor]] | None = None  # inattention: each block's k, v, k_pts, v_pts


class FlashIPAAttention(AttentionVariant[FlashState]):
    """The trunk's attention for `flash_ipa`: pair factors from s0 once per forward, shared by all blocks.

    Args:
        sizes:          the shared IPA sizes
        pair_rank:      rank of the learned pair-bias and pair-value factors
        c_pair_value:   channels of the pair values
        backend:        "auto", "triton", "sdpa" or "torch"
        sc_points:      add the self-conditioned positions as one point per head (module docstring)
        edge_messages:  add a sparse edge-message update to every block (module docstring)
        edge_neighbours: neighbours per residue of the edge graph: half sequence window, half kNN
        c_edge:         channels of the edge messages
        fp8_sampling:   on CUDA and without gradients (sampling), attention runs the FP8 (e4m3) forward
                        kernel ("triton_fp8", kernels/flash_ipa/fp8.py) whatever `backend` says
        content_relpos: add a block-wise relative-position bias with query-dependent weights (module
                        docstring); false in checkpoints from before it
    """

    def __init__(
        self,
        sizes: IPASizes,
        *,
        pair_rank=2,
        c_pair_value=32,
        backend="auto",
        sc_points=True,
        edge_messages=True,
        edge_neighbours=16,
        c_edge=64,
        fp8_sampling=False,
        content_relpos=False,
    ):
        super().__init__()
        c_s, num_heads, num_blocks = sizes.c_s, sizes.num_heads, sizes.num_blocks
        self.backend = check_backend(backend)
        self.fp8_sampling = fp8_sampling
        self.pair_factors = PairFactorEmbedder(c_s, num_heads, pair_rank, c_pair_value)
        self.ipa = nn.ModuleList(
            FactorizedIPA(c_s, c_pair_value, sizes.c_hidden, num_heads, sizes.num_qk_points, sizes.num_v_points)
            for _ in range(num_blocks)
        )
        self.sc_points = sc_points
        if sc_points:
            # [H] per-head scales, geometric from 1 to 8 (Gaussian widths from ~2 nm down to a few Angstrom)
            self.sc_point_scale = nn.Parameter(torch.logspace(0.0, math.log10(8.0), num_heads))
        self.edge_neighbours = edge_neighbours
        self.edges = nn.ModuleList(EdgeMessages(c_s, c_edge) for _ in range(num_blocks)) if edge_messages else None
        num_frequencies = self.pair_factors.relpos_frequencies.numel()
        self.content_relpos = (
            nn.ModuleList(ContentRelposBias(c_s, num_heads, num_frequencies) for _ in range(num_blocks))
            if content_relpos
            else None
        )

    def prepare(self, s0: torch.Tensor, rigids_in: Rigid, inputs: NoisyInputs) -> FlashState:
        factors = self.pair_factors(s0, inputs["residue_index"], inputs["chain_index"], inputs["res_mask"])
        backend = resolve_backend(self.backend, s0.device)
        if self.fp8_sampling and s0.is_cuda and not torch.is_grad_enabled():
            backend = "triton_fp8"
        # SDPA keeps its flash kernel only without a mask: whether the batch is padded comes with the
        # inputs (`all_real`, decided where the batch was made) or is read here, once per forward (a host
        # sync, and a graph break under torch.compile outside the block loop), never in every block. The
        # other backends take the mask on the device.
        all_real = backend == "sdpa" and _all_real(inputs)
        index_sinusoids = None
        if self.content_relpos is not None:
            # ([B, L, F], [B, L, F]) cos and sin of w_f i
            index_sinusoids = self.pair_factors.index_sinusoids(
                inputs["residue_index"], inputs["res_mask"], factors.bias_q.dtype
            )
        trans_sc = inputs.get("trans_sc")
        shared_points = None
        if self.sc_points:
            # [B, L, 3] nm, zeros without self-conditioning (then the extra point changes no logit)
            x_sc = torch.zeros_like(inputs["trans_t"]) if trans_sc is None else trans_sc * ANGSTROM_TO_NM
            # [B, L, H, 1, 3]
            shared_points = x_sc[:, :, None, None, :] * self.sc_point_scale.to(x_sc.dtype)[:, None, None]
        edge_graph = None
        if self.edges is not None:
            k_seq = self.edge_neighbours // 2
            edge_graph = build_edge_graph(
                inputs["trans_t"],
                trans_sc,
                inputs["residue_index"],
                inputs["chain_index"],
                inputs["res_mask"],
                k_seq,
                self.edge_neighbours - k_seq,
            )
        return FlashState(factors, backend, all_real, index_sinusoids, shared_points, edge_graph)

    def _edge_update(self, block: int, s: torch.Tensor, rigids: Rigid, res_mask: torch.Tensor, state: FlashState):
        if self.edges is None:
            return 0.0
        return self.edges[block](s, rigids, state.edge_graph, res_mask)

    def _factors(self, block: int, s: torch.Tensor, state: FlashState) -> PairFactors:
        """The pair factors block `block` attends with: the static ones, plus its content relpos bias."""
        factors = state.factors
        if self.content_relpos is None or state.index_sinusoids is None:
            return factors
        # [B, L, H, 2F] each
        bias_q, bias_k = self.content_relpos[block](s, *state.index_sinusoids)
        return factors._replace(
            bias_q=torch.cat([factors.bias_q, bias_q.to(factors.bias_q.dtype)], dim=-1),  # [B, L, H, R_b + 2F]
            bias_k=torch.cat([factors.bias_k, bias_k.to(factors.bias_k.dtype)], dim=-1),
        )

    def forward(self, block: int, s: torch.Tensor, rigids: Rigid, res_mask: torch.Tensor, state: FlashState):
        keys_values = None if state.keys_values is None else state.keys_values[block]
        out = self.ipa[block](
            s,
            rigids,
            self._factors(block, s, state),
            res_mask,
            state.backend,
            keys_values=keys_values,
            all_real=state.all_real,
            shared_points=state.shared_points,
        )
        return out + self._edge_update(block, s, rigids, res_mask, state)


def _all_real(inputs: NoisyInputs) -> bool:
    known = inputs.get("all_real")
    return bool(inputs["res_mask"].all()) if known is None else known
