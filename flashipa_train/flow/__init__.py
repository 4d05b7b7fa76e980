"""SE(3) flow matching on residue frames: prior, interpolation, losses and the Euler sampler."""

from flashipa_train.flow.flow_matcher import FlowMatcher

__all__ = ["FlowMatcher"]
