"""Triton kernels of cjepa. Each kernel module names its torch reference in ``cjepa`` (the CPU path and the test
oracle); the registry below maps kernel names to (kernel callable path, reference callable path).

On CPU the kernels run under the Triton interpreter: set ``TRITON_INTERPRET=1`` before anything imports triton.
(PyPI has an unrelated package also called ``kernels``; ``CJEPA_KERNELS`` lets a test check this one is ours.)
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable

CJEPA_KERNELS = True
HAS_TRITON = importlib.util.find_spec("triton") is not None

# name -> (kernel, torch reference), as "module:function" strings so importing this package imports no triton.
REGISTRY: dict[str, tuple[str, str]] = {
    # fused softmax-over-slots + eps-renormalised weighted mean, fwd + bwd (kernels.slot_attention=triton)
    "slot_attention": ("kernels.slot_attention:slot_attention_triton",
                       "cjepa.ops.slot_attention:slot_attention_reference"),
    # attention over the predictor's short (T*S <= ~128 token) sequences, fwd + bwd (kernels.attention=triton)
    "predictor_attention": ("kernels.predictor_attention:predictor_attention",
                            "cjepa.ops.attention:attention_reference"),
}


def resolve(name: str) -> tuple[Callable, Callable]:
    """(kernel, reference) callables of a registered kernel; imports triton, so mind TRITON_INTERPRET first."""
    if name not in REGISTRY:
        raise KeyError(f"no kernel named {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return tuple(_load(path) for path in REGISTRY[name])  # type: ignore[return-value]


def _load(path: str) -> Callable:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
