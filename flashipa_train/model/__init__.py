"""The flow-matching denoiser: FlowModel and its attention variants (dense_ipa, flash_ipa, inattention)."""

from flashipa_train.model.flow_model import ATTENTION_VARIANTS, FlowModel
from flashipa_train.model.ipa import DenseIPA, FactorizedIPA, IPAProjections
from flashipa_train.model.pair_factors import PairFactorEmbedder, PairFactors

__all__ = [
    "ATTENTION_VARIANTS",
    "DenseIPA",
    "FactorizedIPA",
    "FlowModel",
    "IPAProjections",
    "PairFactorEmbedder",
    "PairFactors",
]
