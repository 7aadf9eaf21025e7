"""The registry of cjepa's Triton kernels: kernel name -> (kernel callable, torch reference callable).

Each kernel module names its torch reference in ``cjepa`` (the CPU path and the test oracle). On CPU the kernels
run under the Triton interpreter: set ``TRITON_INTERPRET=1`` before anything imports triton.

Import name. The repository folder is ``kernels/``, but it is installed and imported as ``cjepa_kernels``
(``setup.py`` maps the one to the other) and has no ``__init__.py``. PyPI has an unrelated, widely pulled-in
package called ``kernels`` (transformers 5 imports it): a regular package of ours under that name would shadow it
whenever the repository root is on ``sys.path`` and be shadowed by it everywhere else. A folder without
``__init__.py`` is at most a namespace portion, which never wins over a real package of the same name.
"""

from __future__ import annotations

import importlib
from typing import Callable

# name -> (kernel, torch reference), as "module:function" strings so importing this package imports no triton.
REGISTRY: dict[str, tuple[str, str]] = {
    # fused softmax-over-slots + eps-renormalised weighted mean, fwd + bwd (kernels.slot_attention=triton)
    "slot_attention": ("cjepa_kernels.slot_attention:slot_attention_triton",
                       "cjepa.backends.references:slot_attention_reference"),
    # attention over the predictor's short (T*S <= ~128 token) sequences, fwd + bwd (kernels.attention=triton)
    "predictor_attention": ("cjepa_kernels.predictor_attention:predictor_attention",
                            "cjepa.backends.references:attention_reference"),
}


def resolve(name: str) -> tuple[Callable, Callable]:
    """(kernel, reference) callables of a registered kernel; imports triton, so mind TRITON_INTERPRET first."""
    if name not in REGISTRY:
        raise KeyError(f"no kernel named {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return tuple(_load(path) for path in REGISTRY[name])  # type: ignore[return-value]


def _load(path: str) -> Callable:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
