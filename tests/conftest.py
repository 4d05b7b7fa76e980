"""Shared pytest setup: Triton's interpreter on machines without CUDA, and the `gpu` marker's skip."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    # must be set before triton is first imported: the FlashIPA kernels then run on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
