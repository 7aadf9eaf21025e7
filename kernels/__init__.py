"""Triton kernels of cjepa. Each kernel module names its torch reference in ``cjepa`` (the CPU path and the test
oracle); the registry below maps kernel names to (kernel callable path, reference callable path).

On CPU the kernels run under the Triton interpreter: set ``TRITON_INTERPRET=1`` before anything imports triton.
(PyPI has an unrelated package also called ``kernels``; ``CJEPA_KERNELS`` lets a test check this one is ours.)
"""

from __future__ import annotations

import importlib.util

CJEPA_KERNELS = True
HAS_TRITON = importlib.util.find_spec("triton") is not None

# name -> (kernel, torch reference), as "module:function" strings so importing this package imports no triton.
REGISTRY: dict[str, tuple[str, str]] = {}
