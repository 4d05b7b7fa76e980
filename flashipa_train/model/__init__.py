"""The flow-matching denoiser: FlowModel and its attention variants (the registry: attention_variants.py)."""

from flashipa_train.model.attention_variants import (
    ATTENTION_VARIANTS,
    variant_backend,
    variant_backends,
    variant_fields,
)
from flashipa_train.model.flow_model import FlowModel
from flashipa_train.model.inputs import NoisyInputs
from flashipa_train.model.ipa import DenseIPA, FactorizedIPA, IPAProjections
from flashipa_train.model.pair_factors import PairFactorEmbedder, PairFactors
from flashipa_train.model.sizes import IPASizes

__all__ = [
    "ATTENTION_VARIANTS",
    "DenseIPA",
    "FactorizedIPA",
    "FlowModel",
    "IPAProjections",
    "IPASizes",
    "NoisyInputs",
    "PairFactorEmbedder",
    "PairFactors",
    "variant_backend",
    "variant_backends",
    "variant_fields",
]
