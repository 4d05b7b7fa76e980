"""The registry of attention variants: the only place that turns `model.attention` into a module.

A variant is an `AttentionVariant` (attention_interface.py): `cls(sizes: IPASizes, *, <its own fields>)` with
`prepare`, `forward` and `after_block`. `model.attention` is {"name": one of ATTENTION_VARIANTS, then that
class's own keyword fields, `backend` among them}; configs/model/attention/<name>.yaml lists them.
"""

import inspect
from collections.abc import Mapping
from typing import Any

from flashipa_train.model.attention_dense import DenseIPAAttention
from flashipa_train.model.attention_entmax import EntmaxIPAAttention
from flashipa_train.model.attention_flash import FlashIPAAttention
from flashipa_train.model.attention_inattention import InAttentionIPAAttention
from flashipa_train.model.attention_interface import AttentionVariant
from flashipa_train.model.attention_spatial import SpatialIPAAttention
from flashipa_train.model.sizes import IPASizes

ATTENTION_VARIANTS: dict[str, type[AttentionVariant]] = {
    "dense_ipa": DenseIPAAttention,
    "flash_ipa": FlashIPAAttention,
    "inattention": InAttentionIPAAttention,
    "entmax_ipa": EntmaxIPAAttention,
    "spatial_ipa": SpatialIPAAttention,
}


def variant_class(attention: Mapping) -> type[AttentionVariant]:
    """The class named by attention["name"]."""
    name = attention.get("name")
    if name not in ATTENTION_VARIANTS:
        raise ValueError(
            f"model.attention.name={name!r} is not one of {sorted(ATTENTION_VARIANTS)}; "
            f"pick one with model/attention={'|'.join(ATTENTION_VARIANTS)}"
        )
    return ATTENTION_VARIANTS[name]


def variant_fields(name: str) -> dict[str, Any]:
    """The own fields of variant `name` (its constructor's keyword-only arguments) with their defaults."""
    parameters = inspect.signature(ATTENTION_VARIANTS[name].__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def variant_backend(attention: Mapping) -> str:
    """The backend `attention` asks for: its `backend`, else the variant's default ("torch" for dense_ipa)."""
    variant_class(attention)
    return attention.get("backend", variant_fields(attention["name"])["backend"])


def variant_backends(name: str) -> tuple[str, ...]:
    """The `backend` names variant `name` accepts (one only: the variant has no backend choice)."""
    return ATTENTION_VARIANTS[name].backends


def build_attention(attention: Mapping, sizes: IPASizes) -> AttentionVariant:
    """The trunk attention module: the class named by attention["name"] with the shared sizes and its own fields."""
    cls = variant_class(attention)
    name = attention["name"]
    own = {key: value for key, value in attention.items() if key != "name"}
    unknown = sorted(set(own) - set(variant_fields(name)))
    if unknown:
        raise ValueError(
            f"model.attention has {unknown}, which {name} does not take (its fields: {sorted(variant_fields(name))}); "
            f"configs/model/attention/{name}.yaml lists them (a dict override merges into the group's node: "
            "switch variants with model/attention=<name>)"
        )
    return cls(sizes, **own)
