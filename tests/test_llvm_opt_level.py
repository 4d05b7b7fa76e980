"""FLASHIPA_LLVM_OPT: the LLVM optimisation level that Triton's NVIDIA backend applies (kernels/llvm_opt_level.py)."""

import pytest

from flashipa_kernels import llvm_opt_level


def test_level_from_the_environment_replaces_o3(monkeypatch):
    llvm = pytest.importorskip("triton._C.libtriton").llvm
    seen = []
    monkeypatch.setattr(llvm, "optimize_module", lambda module, level, *args, **kwargs: seen.append(level))
    monkeypatch.setenv("FLASHIPA_LLVM_OPT", "O1")
    monkeypatch.setattr(llvm_opt_level, "_applied", None)
    assert llvm_opt_level.apply_from_env() == "O1"
    llvm.optimize_module(None, llvm.OPTIMIZE_O3, flags=[])  # as the backend calls it
    assert seen == [llvm.OPTIMIZE_O1]


def test_unset_changes_nothing_and_a_bad_level_names_the_choices(monkeypatch):
    monkeypatch.delenv("FLASHIPA_LLVM_OPT", raising=False)
    monkeypatch.setattr(llvm_opt_level, "_applied", None)
    assert llvm_opt_level.apply_from_env() is None
    monkeypatch.setenv("FLASHIPA_LLVM_OPT", "fast")
    with pytest.raises(ValueError, match="O0"):
        llvm_opt_level.apply_from_env()
