"""FlashIPA: fused forward and backward Invariant Point Attention in Triton (O(L) memory)."""

from flashipa_kernels.flash_ipa.attention import flash_ipa_attention

__all__ = ["flash_ipa_attention"]
