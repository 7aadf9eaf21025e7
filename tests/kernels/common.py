"""What the kernel parity tests share: where kernels run, the dtype -> tolerance table, shape tiers.

On a CUDA machine the kernels run natively and the tests add realistic shapes; without CUDA they run under the
Triton interpreter (the root conftest sets ``TRITON_INTERPRET=1`` before triton is imported), where every program
runs one after another in numpy, so shapes stay tiny. Without either, kernel tests skip.
"""

from __future__ import annotations

import os

import pytest
import torch

ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cuda" if ON_GPU else "cpu")

requires_triton_runtime = pytest.mark.skipif(
    not ON_GPU and not INTERPRETED, reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1 (set before import)"
)

# dtype -> (atol, rtol) for kernel-vs-reference comparisons of outputs and gradients. fp32 kernels use exact fp32
# dots, so they agree to summation order; bf16/fp16 results are rounded once to their dtype (2^-8 and 2^-11
# relative), and on GPU their intermediates additionally go through tf32 tensor cores (~2^-11 relative).
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (5e-3, 5e-3),
}


def dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def shapes(cpu: list[tuple], gpu: list[tuple]) -> list[tuple]:
    """Tiny shapes everywhere; realistic ones added only where the kernels run natively."""
    return cpu + (gpu if ON_GPU else [])


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(shape, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """Normal values drawn on CPU from `gen` (same numbers on every device), moved to DEVICE in `dtype`."""
    return torch.randn(shape, generator=gen).to(DEVICE, dtype)


def leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_() for t in tensors]
