"""The IPA sizes every attention variant shares, built once by FlowModel from its own arguments."""

from dataclasses import dataclass


@dataclass(frozen=True)
class IPASizes:
    """Sizes of the trunk's invariant point attention, whatever the variant.

    Args:
        c_s:           single representation channels
        c_hidden:      scalar query/key/value channels per head
        num_heads:     heads H
        num_qk_points: query/key points per head P_q
        num_v_points:  value points per head P_v
        num_blocks:    trunk blocks (one IPA layer each)
    """

    c_s: int
    c_hidden: int
    num_heads: int
    num_qk_points: int
    num_v_points: int
    num_blocks: int
