"""alpha-entmax IPA: sparse Invariant Point Attention (weights exactly zero outside a data-dependent support).

threshold.py        the threshold tau by Halley-bisection (PyTorch; the kernels run the same iteration)
reference_dense.py  float64 reference: dense logits, bisection to machine precision, closed-form gradients
reference_tiled.py  memory-lean PyTorch version (tiles of queries and keys): the model's CPU backend
triton_kernels.py   threshold pass, forward, dK/dV and dQ kernels with key-block skipping
launch.py           host launchers; attention.py the public entry points
"""

from flashipa_kernels.entmax_ipa.attention import entmax_ipa_attention, entmax_ipa_threshold_stats
from flashipa_kernels.entmax_ipa.reference_dense import dense_entmax_ipa_attention
from flashipa_kernels.entmax_ipa.reference_tiled import tiled_entmax_ipa_attention

__all__ = [
    "dense_entmax_ipa_attention",
    "entmax_ipa_attention",
    "entmax_ipa_threshold_stats",
    "tiled_entmax_ipa_attention",
]
