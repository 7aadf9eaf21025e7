"""TF32 matmuls on CUDA (``train.tf32``).

fp32 matmuls and convolutions on Ampere and later GPUs can run on tensor cores in TF32 (10-bit mantissa inputs,
fp32 accumulation): several times faster, at about 1e-3 relative error per product. torch's default is exact fp32
("highest"). ``train.tf32=true`` switches both knobs (``torch.set_float32_matmul_precision("high")`` for matmuls,
``torch.backends.cudnn.allow_tf32`` for convolutions) for the process, but only when the run is on a CUDA device:
CPU runs keep exact fp32, so their results do not depend on the flag. The Triton kernels follow the same global
setting for their fp32 dots.
"""

from __future__ import annotations

import torch


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
