"""The kernel registry (kernels/registry.py, imported as cjepa_kernels.registry) points at real kernels and the
references they are tested against."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from cjepa_kernels import registry as kernels

from tests.helpers import REPO
from tests.kernels.common import requires_triton_runtime


def test_registry_is_this_repository():
    """`cjepa_kernels` is this repository's kernels/ folder (PyPI's unrelated `kernels` keeps its own name)."""
    assert Path(kernels.__file__).resolve().is_relative_to(REPO)


@requires_triton_runtime
@pytest.mark.parametrize("name", sorted(kernels.REGISTRY))
def test_registry_entries_resolve_to_kernel_and_reference(name):
    """Each entry resolves to two callables, and the kernel module's REFERENCE is the registered reference."""
    kernel, reference = kernels.resolve(name)
    assert callable(kernel) and callable(reference)
    module = importlib.import_module(kernels.REGISTRY[name][0].partition(":")[0])
    assert module.REFERENCE is reference
    assert reference.__module__.startswith("cjepa."), "references live in the cjepa library, not in tests"


def test_unknown_kernel_name_is_a_clear_error():
    """Asking for an unregistered kernel names the registered ones."""
    with pytest.raises(KeyError, match="registered: predictor_attention, slot_attention"):
        kernels.resolve("masked_mse")
