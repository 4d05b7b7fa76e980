"""The model and flow configs stored in a checkpoint are data: checked against the project's own schema and
rebuilt by code, never handed to `hydra.utils.instantiate`.

A stored config may name only the project's FlowModel / FlowMatcher as `_target_`, only that class's own
constructor arguments, plain scalar values (no interpolations), and `attention` as {"name", "backend"} of a
known variant plus that variant's own constructor fields as plain scalars. Anything else (another `_target_`,
a nested `_target_`, `_partial_`, unknown keys) is refused with a message naming the checkpoint and the field.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from flashipa_kernels.backends import BACKENDS
from flashipa_train.checkpoint.weights import CheckpointError
from flashipa_train.flow import FlowMatcher
from flashipa_train.model import ATTENTION_VARIANTS, FlowModel, variant_fields

MODEL_TARGETS = ("flashipa_train.model.FlowModel", "flashipa_train.model.flow_model.FlowModel")
FLOW_TARGETS = ("flashipa_train.flow.FlowMatcher", "flashipa_train.flow.flow_matcher.FlowMatcher")
# model fields that change no parameter shape: a resume or fine-tune may differ in them
_RUNTIME_MODEL_FIELDS = ("checkpoint_blocks", "dropout")
# FlowModel fields of older checkpoints that are now own fields of the variants that use them
_MOVED_TO_ATTENTION = ("c_z", "pair_rank", "c_pair_value")


def _constructor_fields(cls: type) -> set[str]:
    return {name for name in inspect.signature(cls.__init__).parameters if name != "self"}


def _plain_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return "${" not in value  # an interpolation would run a resolver when the config is read
    return value is None or isinstance(value, (bool, int, float))


def _checked_fields(stored: Any, targets: tuple[str, ...], cls: type, section: str, source: str) -> dict[str, Any]:
    """Constructor arguments of `cls` from a stored `section` config, after checking it field by field."""
    where = f"{source}: the stored run_config.{section}"
    if not isinstance(stored, Mapping):
        raise CheckpointError(
            f"{where} is a {type(stored).__name__}, not a mapping; the checkpoint is not from flashipa-train."
        )
    target = stored.get("_target_")
    if target not in targets:
        raise CheckpointError(
            f"{where} has _target_={target!r}; only {targets[0]} is accepted (a checkpoint cannot choose the code "
            "that runs). Refusing this checkpoint."
        )
    allowed = _constructor_fields(cls)
    fields = {}
    for key, value in stored.items():
        if key == "_target_":
            continue
        if key not in allowed:
            raise CheckpointError(
                f"{where} has field {key!r}, which {cls.__name__} does not take; refusing this checkpoint."
            )
        if key == "attention" and cls is FlowModel:
            fields[key] = _checked_attention(value, where)
        elif _plain_scalar(value):
            fields[key] = value
        else:
            raise CheckpointError(
                f"{where}.{key} is {type(value).__name__} {str(value)[:80]!r}, not a plain number, string or flag; "
                "refusing this checkpoint."
            )
    return fields


def _checked_attention(value: Any, where: str) -> dict[str, Any]:
    """{name, backend} and the variant's own fields (its constructor arguments, plain scalars only)."""
    if not isinstance(value, Mapping):
        raise CheckpointError(
            f"{where}.attention must be a mapping, got {str(value)[:120]!r}; refusing this checkpoint."
        )
    if value.get("name") not in ATTENTION_VARIANTS:
        raise CheckpointError(
            f"{where}.attention.name={value.get('name')!r} is not one of {sorted(ATTENTION_VARIANTS)}; "
            "refusing this checkpoint."
        )
    backend = value.get("backend", "auto")
    if backend not in BACKENDS:
        raise CheckpointError(f"{where}.attention.backend={backend!r} is not one of {BACKENDS}.")
    own = set(variant_fields(value["name"])) - {"backend"}
    fields = {"name": value["name"], "backend": backend}
    for key, field in value.items():
        if key in fields:
            continue
        if key not in own or not _plain_scalar(field):
            raise CheckpointError(
                f"{where}.attention.{key}={str(field)[:80]!r} is not a plain field of {value['name']}; "
                "refusing this checkpoint."
            )
        fields[key] = field
    return fields


def migrated_model_config(stored: Any) -> Any:
    """An older stored model config in today's layout. c_z, pair_rank and c_pair_value were FlowModel fields
    (each variant ignored those it did not use): each moves into `attention` when the variant takes it and is
    dropped otherwise. Anything else is returned as it is, for the schema check."""
    if not isinstance(stored, Mapping) or not any(key in stored for key in _MOVED_TO_ATTENTION):
        return stored
    attention = stored.get("attention")
    if not isinstance(attention, Mapping) or attention.get("name") not in ATTENTION_VARIANTS:
        return stored
    own = variant_fields(attention["name"])
    moved = {key: stored[key] for key in _MOVED_TO_ATTENTION if key in stored and key in own}
    rest = {key: value for key, value in stored.items() if key not in _MOVED_TO_ATTENTION}
    return {**rest, "attention": {**attention, **moved}}


def checked_model_config(stored: Any, source: str) -> dict[str, Any]:
    """The stored model config as a plain dict ({"_target_": FlowModel, fields...}) once it passes the schema
    (an older layout migrated first)."""
    fields = _checked_fields(migrated_model_config(stored), MODEL_TARGETS, FlowModel, "model", source)
    return {"_target_": MODEL_TARGETS[0], **fields}


def model_from_stored_config(stored: Any, source: str) -> FlowModel:
    """A FlowModel built by code from a stored model config checked against the schema."""
    fields = checked_model_config(stored, source)
    fields.pop("_target_")
    return FlowModel(**fields)


def flow_from_stored_config(stored: Any, source: str) -> FlowMatcher:
    """A FlowMatcher built by code from a stored flow config checked against the schema."""
    return FlowMatcher(**_checked_fields(stored, FLOW_TARGETS, FlowMatcher, "flow", source))


def check_same_model(stored: Any, configured: Mapping, source: str) -> None:
    """Raise when the model a checkpoint was trained with differs in shape from the configured one; the
    message names the attention variants first (`this checkpoint is dense_ipa, the config is flash_ipa`)."""
    stored = checked_model_config(stored, source)
    configured = dict(configured)
    stored_variant = stored.get("attention", {}).get("name")
    configured_variant = dict(configured.get("attention") or {}).get("name")
    if stored_variant != configured_variant:
        raise CheckpointError(
            f"{source}: this checkpoint is {stored_variant}, the config is {configured_variant}; add "
            f"model/attention={stored_variant} (and the run's other model.* overrides)."
        )
    differing = [
        f"model.{key}={configured.get(key)!r} (checkpoint: {stored.get(key)!r})"
        for key in sorted(set(stored) - {"_target_", "attention", *_RUNTIME_MODEL_FIELDS})
        if key in configured and configured.get(key) != stored.get(key)
    ]
    # the variants' pair sizes (model fields before they moved into attention)
    ours, theirs = dict(configured.get("attention") or {}), stored.get("attention", {})
    differing += [
        f"model.attention.{key}={ours[key]!r} (checkpoint: {theirs[key]!r})"
        for key in _MOVED_TO_ATTENTION
        if key in ours and key in theirs and ours[key] != theirs[key]
    ]
    if differing:
        raise CheckpointError(
            f"{source}: the config builds another model than the checkpoint's: {', '.join(differing)}; use the "
            "model overrides of the run that wrote it."
        )
