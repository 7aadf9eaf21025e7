"""Numeric precision of training: ``train.precision`` (fp32 | bf16 | auto) and TF32 matmuls on CUDA (``train.tf32``).

``train.precision=bf16`` runs the forward under bf16 autocast over fp32 master weights (optimizer state and updates
stay fp32). ``auto`` resolves once per run, on the device the run trains on (:func:`resolve_precision`):

* a CUDA GPU that supports bf16 (Ampere and later) -> bf16;
* a CPU with native bf16 dot products -> bf16. That is AMX-BF16 (Intel Sapphire Rapids and later) or AVX512-BF16
  (Intel Cooper Lake, AMD Zen 4 and later): oneDNN runs bf16 matmuls and convolutions on these instructions, at
  about twice the fp32 rate on AVX512-BF16 and far more on AMX;
* anything else -> fp32: without these instructions bf16 is converted to fp32 around every product and is slower
  than fp32.

TF32: fp32 matmuls and convolutions on Ampere and later GPUs can run on tensor cores in TF32 (10-bit mantissa inputs,
fp32 accumulation): several times faster, at about 1e-3 relative error per product. torch's default is exact fp32
("highest"). ``train.tf32=true`` switches both knobs (``torch.set_float32_matmul_precision("high")`` for matmuls,
``torch.backends.cudnn.allow_tf32`` for convolutions) for the process, but only when the run is on a CUDA device:
CPU runs keep exact fp32, so their results do not depend on the flag. The Triton kernels follow the same global
setting for their fp32 dots.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional

import torch

PRECISIONS = ("fp32", "bf16", "auto")


def cpu_bf16_instructions() -> list[str]:
    """The native bf16 instruction sets of this CPU that oneDNN uses: a sublist of ["amx_bf16", "avx512_bf16"].

    torch's own CPU feature query (cpuinfo, the library its kernels dispatch with) is asked, not /proc/cpuinfo: it
    works on every OS torch runs on and reports what torch's kernels can actually use. Its AMX query is for the
    AMX tile unit; every CPU that has AMX tiles so far also has AMX-BF16 (the tiles' first instruction set)."""
    found = []
    if torch.cpu._is_amx_tile_supported():  # public API has no query for these; this is torch's own dispatch check
        found.append("amx_bf16")
    if torch.cpu._is_avx512_bf16_supported():
        found.append("avx512_bf16")
    return found


def resolve_precision(requested: str, device: torch.device | str, setting: str = "train.precision") -> str:
    """``fp32`` or ``bf16``: ``requested`` itself, or for ``auto`` what pays on ``device`` (see the module docs).

    ``setting`` names the option in the error for an unknown value (the planner's is ``plan.precision``)."""
    if requested not in PRECISIONS:
        raise ValueError(f"{setting}={requested!r}: choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if dev.type == "cpu":
        return "bf16" if cpu_bf16_instructions() else "fp32"
    return "fp32"


def precision_reason(requested: str, resolved: str, device: torch.device | str) -> str:
    """One line for the run's log: what was asked, what runs, and for ``auto`` why."""
    if requested != "auto":
        return resolved
    dev = torch.device(device)
    if dev.type == "cpu":
        found = cpu_bf16_instructions()
        why = f"CPU with {', '.join(found)}" if found else "CPU without AMX-BF16 or AVX512-BF16"
    elif dev.type == "cuda":
        why = "CUDA GPU " + ("with" if resolved == "bf16" else "without") + " bf16 support"
    else:
        why = f"{dev.type} device"
    return f"{resolved} (auto: {why})"


def autocast_dtype(resolved: str) -> Optional[torch.dtype]:
    """The autocast dtype of a resolved precision: bf16 -> torch.bfloat16, fp32 -> None (no autocast)."""
    if resolved not in ("fp32", "bf16"):
        raise ValueError(f"precision {resolved!r} is not resolved (fp32 or bf16); call resolve_precision first")
    return torch.bfloat16 if resolved == "bf16" else None


def autocast(resolved: str, device: torch.device | str) -> ContextManager:
    """bf16 autocast on ``device`` for a resolved ``bf16``; nothing for ``fp32``."""
    dtype = autocast_dtype(resolved)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def apply_tf32(enabled: bool, device: torch.device | str) -> bool:
    """Allow TF32 matmuls and cuDNN convolutions when ``enabled`` and ``device`` is CUDA.

    Returns whether TF32 is now on. Nothing changes on other devices or when ``enabled`` is false (an earlier
    setting of the process is left as it is).
    """
    if not enabled or torch.device(device).type != "cuda":
        return False
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    return True
