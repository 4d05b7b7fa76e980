"""The IPA attention backends: their names, "auto" resolution and the dispatch to each one.

  torch       `tiled_ipa_attention` (kernels/reference): PyTorch tiles with an online softmax, memory
              O(L * tile); the CPU fallback of the model and the float64 reference.
  sdpa        `sdpa_ipa_attention` (kernels/sdpa_ipa.py): torch's scaled_dot_product_attention over padded
              features; on the H200 (torch 2.11) cuDNN's Hopper attention, not FlashAttention-2.
  triton      `flash_ipa_attention` (kernels/flash_ipa): the FlashIPA Triton kernel.
  triton_fp8  `flash_ipa_attention_fp8` (kernels/flash_ipa/fp8.py): e4m3 dots, forward only (sampling);
              never named in a config, chosen by the model (`fp8_sampling`).

"auto" is "sdpa" on CUDA and "torch" elsewhere. The Triton kernel is opt-in: it runs clean on the GPU and
needs less memory, but at the anchor dims its forward+backward reaches 0.78x / 0.82x of cuDNN's speed at
L = 8192 / 32768 (1.35x the FlashAttention-2 kernel flash_ipa calls), so "auto" keeps sdpa
(docs/benchmarks/attention.md, docs/kernel_notes.md).
"""

import functools
from collections.abc import Callable

import torch

from flashipa_kernels.reference.factorized_attention import tiled_ipa_attention
from flashipa_kernels.sdpa_ipa import sdpa_ipa_attention

BACKENDS = ("auto", "triton", "sdpa", "torch")


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"model.attention.backend={backend!r} is not one of {BACKENDS}; set it in configs/model/attention/*.yaml"
        )
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """ "auto" -> "sdpa" on CUDA, else "torch"; other names unchanged."""
    if backend != "auto":
        return backend
    return "sdpa" if device.type == "cuda" else "torch"


def attention_core(backend: str, tile: int = 256) -> Callable:
    """The attention core of a backend: a function (q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k,
    point_weights, mask=None) -> (o, o_pts, o_pair), arguments and outputs as `ipa_attention_core`'s.

    Args:
        backend: "torch", "sdpa", "triton" or "triton_fp8" (forward only, no gradients); resolve "auto"
                 first (`resolve_backend`).
        tile:    query and key tile length of the "torch" backend (ignored by the others).
    """
    # the Triton modules load (and register their custom ops) only when a Triton backend is asked for
    if backend == "triton":
        from flashipa_kernels.flash_ipa import flash_ipa_attention

        return flash_ipa_attention
    if backend == "triton_fp8":
        from flashipa_kernels.flash_ipa.fp8 import flash_ipa_attention_fp8

        return flash_ipa_attention_fp8
    if backend == "torch":
        return functools.partial(tiled_ipa_attention, tile=tile)
    if backend == "sdpa":
        return sdpa_ipa_attention
    raise ValueError(f"unknown IPA attention backend {backend!r}: use 'torch', 'sdpa' or 'triton'")


def ipa_attention_core(
    q,
    k,
    v,
    q_pts,
    k_pts,
    v_pts,
    bias_q,
    bias_k,
    pair_k,
    point_weights,
    mask=None,
    backend="torch",
    tile=256,
):
    """IPA attention over per-residue features (shapes as in `ipa_attention_features`) on one backend.

    Args:
        mask: [B, L] bool, True for real residues (None: all real; the Triton kernel and sdpa then
              run their unpadded paths, no mask built or read).
        backend, tile: as in `attention_core`.
    Returns:
        o:      [B, L, H, C_v]       sum_j a_hij v_hj
        o_pts:  [B, L, H, P_v, 3]    sum_j a_hij v_pts_hj (global frame)
        o_pair: [B, L, H, R, C_z]    sum_j a_hij pair_k_jr
    """
    core = attention_core(backend, tile)
    return core(q, k, v, q_pts, k_pts, v_pts, bias_q, bias_k, pair_k, point_weights, mask)
