"""The ``run`` section: name, output folder, seed and device of a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(kw_only=True)
class RunConfig:
    name: str = "run"  # run directory name under out_dir
    out_dir: str = "runs"
    seed: int = 42  # seeds model init, data order and mask sampling (masks use masking.seed too)
    device: Literal["auto", "cpu", "cuda"] = "auto"
