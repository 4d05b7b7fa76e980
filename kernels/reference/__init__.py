from flashipa_kernels.reference.dense_attention import dense_ipa_attention
from flashipa_kernels.reference.factorized_attention import (
    factorized_ipa_attention,
    ipa_attention_features,
    pair_bias_from_factors,
    pair_values_from_factors,
    tiled_ipa_attention,
)
from flashipa_kernels.reference.ipa_module import InvariantPointAttention

__all__ = [
    "InvariantPointAttention",
    "dense_ipa_attention",
    "factorized_ipa_attention",
    "ipa_attention_features",
    "pair_bias_from_factors",
    "pair_values_from_factors",
    "tiled_ipa_attention",
]
