"""The facts of a training run, read from its config before anything runs: attention variant and backend, a
label naming them, length and batch size, precision, compile, block checkpointing, device and library
versions. Every run logs them as its wandb config's top-level keys (runs are filtered and grouped by them);
a scaling sweep point starts its row of the results table with them."""

from __future__ import annotations

import platform
from typing import Any

import torch
from omegaconf import DictConfig

from flashipa_train.data.synthetic import batch_size_for
from flashipa_train.model import variant_backend, variant_backends
from flashipa_train.train.compile_choice import resolved_compile


def describe_run(cfg: DictConfig) -> dict[str, Any]:
    """variant, backend, label, length, batch_size, precision, compile, checkpoint_blocks, device, the library
    versions and run_dir of the run `cfg` describes."""
    attention = cfg.model.attention
    backend = variant_backend(attention)
    data = cfg.data
    if "length" in data:  # synthetic chains
        length = data.length
        batch = batch_size_for(length, data.get("batch_size"), data.get("tokens_per_batch", length))
    elif data.get("crop_length"):  # real chains cropped to crop_length, packed under the token budget
        length = data.crop_length
        batch = max(1, int(data.get("max_tokens_per_batch") or length) // int(length))
    else:  # a data config of another kind: no length to report
        length, batch = 0, None
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    compile_option = compile_description(resolved_compile(cfg))
    checkpoint_blocks = cfg.model.get("checkpoint_blocks") or 0  # a number or "auto"
    return {
        "variant": attention.name,
        "backend": backend,
        "label": variant_label(attention.name, backend, compile_option, checkpoint_blocks),
        "length": int(length),
        "batch_size": batch,
        "precision": str(cfg.trainer.get("precision")),
        "compile": compile_option,
        "checkpoint_blocks": checkpoint_blocks,
        "device": device,
        **library_versions(),
        "run_dir": str(cfg.paths.output_dir),
    }


def variant_label(variant: str, backend: str, compile: str = "off", checkpoint_blocks: int | str = 0) -> str:
    """`flash_ipa/sdpa`: the name of one line of the scaling plots (the backend left out where a variant has
    no choice: `dense_ipa`), with the options that change speed or memory when set
    (`flash_ipa/sdpa compile(mode=reduce-overhead) ckpt3`)."""
    label = variant if len(variant_backends(variant)) == 1 else f"{variant}/{backend}"
    if compile != "off":
        label += " compile" if compile == "on" else f" compile({compile})"
    if checkpoint_blocks:
        label += " ckpt-auto" if checkpoint_blocks == "auto" else f" ckpt{checkpoint_blocks}"
    return label


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that set the speed ("none" where one is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name, distribution in (
        ("torch", "torch"),
        ("triton", "triton"),
        ("lightning", "pytorch-lightning"),
        ("flashipa_train", "flashipa_train"),
    ):
        try:
            found[name] = version(distribution)
        except PackageNotFoundError:
            found[name] = "none"
    found["torch"] = torch.__version__  # the imported build (e.g. 2.13.0+cpu)
    return found


def compile_description(option: Any) -> str:
    """The `compile` setting as a table cell: "off", "on" (torch.compile's defaults) or its arguments
    ("mode=reduce-overhead")."""
    if not option:
        return "off"
    if isinstance(option, (dict, DictConfig)):
        return " ".join(f"{key}={value}" for key, value in option.items()) or "on"
    return "on"
