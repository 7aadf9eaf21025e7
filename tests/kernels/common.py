"""What the kernel parity tests share: where kernels run, the dtype -> tolerance table, shape tiers.

On a CUDA machine the kernels run natively and the tests add realistic shapes; without CUDA they run under the
Triton interpreter (the root conftest sets ``TRITON_INTERPRET=1`` before triton is imported), where every program
runs one after another in numpy, so shapes stay tiny. Without either, kernel tests skip.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch

ON_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cuda" if ON_GPU else "cpu")

requires_triton_runtime = pytest.mark.skipif(
    not ON_GPU and not INTERPRETED, reason="Triton kernels need a CUDA device or TRITON_INTERPRET=1 (set before import)"
)

# dtype -> (atol, rtol) for kernel-vs-reference comparisons of outputs and gradients. fp32 kernels use exact fp32
# dots (input_precision="ieee"), so they agree to summation order; bf16/fp16 results are rounded once to their
# dtype (2^-8 and 2^-11 relative), and on GPU their fp32 intermediates (softmax weights, score gradients) go through
# tf32 tensor cores (2^-11 relative per operand). The tf32 part is checked, not assumed: the *_tf32_dots_* tests run
# the kernels with every tf32 dot's operands rounded as the tensor cores round them (see :func:`tf32_dots`).
TOLERANCES = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (5e-3, 5e-3),
}
# fp32 inputs once torch's fp32 matmul precision allows tf32 (``torch.set_float32_matmul_precision("high")``): the
# kernels then use tf32 dots as torch's own matmuls do, and agree with the exact reference to tf32's rounding.
TF32_TOLERANCE = (5e-3, 5e-3)


def dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# (dtype, torch fp32 matmul precision, tolerance) of the kernels' tf32 checks: the precision each case gets from the
# kernels' _precision and the tolerance the GPU parity tests apply to it.
PRECISION_CASES = [
    (torch.float32, "highest", TOLERANCES[torch.float32]),  # exact fp32 dots: tf32 rounding must not show up
    (torch.float32, "high", TF32_TOLERANCE),  # the user allowed tf32 for fp32 matmuls
    (torch.bfloat16, "highest", TOLERANCES[torch.bfloat16]),
    (torch.float16, "highest", TOLERANCES[torch.float16]),
]


def precision_case_id(value) -> str:
    """pytest id of one PRECISION_CASES field: the dtype, the precision name, nothing for the tolerance."""
    return dtype_id(value) if isinstance(value, torch.dtype) else (value if isinstance(value, str) else "")


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


def tf32_round(x: torch.Tensor) -> torch.Tensor:
    """fp32 values rounded to tf32 (8-bit exponent, 10-bit mantissa): the low 13 mantissa bits cleared, rounding to
    nearest (ties to even), as the conversion before a tensor-core tf32 dot does. Relative error <= 2^-11."""
    bits = x.float().contiguous().view(torch.int32)
    keep_odd = (bits >> 13) & 1  # ties go to the even tf32 mantissa
    rounded = (bits + 0x0FFF + keep_odd) & ~0x1FFF
    finite = torch.isfinite(x.float())  # inf/NaN pass through unchanged
    return torch.where(finite, rounded.view(torch.float32), x.float())


@contextlib.contextmanager
def tf32_dots():
    """Make the Triton interpreter's ``tl.dot`` round like a GPU's: operands of ``input_precision="tf32"`` dots are
    rounded to tf32 (:func:`tf32_round`), ``"tf32x3"`` dots use the three-term split a_hi b_hi + a_hi b_lo + a_lo b_hi
    of tf32 parts, ``"ieee"`` dots stay exact fp32. The interpreter otherwise computes every dot exactly, so without
    this the tf32 error of a kernel is never seen on CPU. On a GPU the tensor cores round by themselves and this
    changes nothing. Patches an interpreter internal (``InterpreterBuilder.create_dot``)."""
    if not INTERPRETED:
        yield
        return
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    exact = InterpreterBuilder.create_dot

    def r(a: np.ndarray) -> np.ndarray:
        return tf32_round(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))).numpy()

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        mode = getattr(input_precision, "name", str(input_precision)).upper()
        if a.data.dtype != np.float32 or b.data.dtype != np.float32 or mode not in ("TF32", "TF32X3"):
            return exact(self, a, b, d, input_precision, max_num_imprecise_acc)
        a_hi, b_hi = r(a.data), r(b.data)
        if mode == "TF32":
            prod = np.matmul(a_hi, b_hi, dtype=np.float32)
        else:
            a_lo, b_lo = r(a.data - a_hi), r(b.data - b_hi)
            prod = (np.matmul(a_hi, b_lo, dtype=np.float32) + np.matmul(a_lo, b_hi, dtype=np.float32)
                    + np.matmul(a_hi, b_hi, dtype=np.float32))
        return TensorHandle(prod + d.data, d.dtype.scalar)

    InterpreterBuilder.create_dot = create_dot
    try:
        yield
    finally:
        InterpreterBuilder.create_dot = exact


def compile_recording(graphs: list):
    """A torch.compile backend that records the FX graphs dynamo hands it, then compiles them with "aot_eager"
    (AOT autograd: fake-tensor tracing of forward and backward, run eagerly). On CPU the Triton kernels run in the
    interpreter, which inductor would also call (it leaves custom ops as calls), at ~20 s of compile time a test."""

    def backend(gm, example_inputs):
        graphs.append(gm)
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    return backend


def graph_targets(graphs: list) -> set[str]:
    return {str(node.target) for gm in graphs for node in gm.graph.nodes if node.op == "call_function"}
