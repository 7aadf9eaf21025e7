"""Helpers shared by tests: verbose tensor comparison, tiny configs, multi-process spawning."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke" / "cpu.yaml")


def assert_close_verbose(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float, name: str = "tensor") -> None:
    """assert_close with a report: max abs error, mismatch count, first bad indices, NaN/inf mismatches."""
    a, e = actual.detach().float().cpu(), expected.detach().float().cpu()
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {tuple(a.shape)} != expected {tuple(e.shape)}")
    nan_mismatch = (torch.isnan(a) != torch.isnan(e)) | (torch.isinf(a) != torch.isinf(e))
    diff = (a - e).abs()
    bad = (diff > atol + rtol * e.abs()) | nan_mismatch
    bad &= ~(torch.isnan(a) & torch.isnan(e))
    if bad.any():
        idx = torch.nonzero(bad)[:5].tolist()
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} elements differ (atol={atol}, rtol={rtol}); "
            f"max abs err {float(diff[~torch.isnan(diff)].max()) if (~torch.isnan(diff)).any() else 'nan'}; "
            f"NaN/inf mismatches {int(nan_mismatch.sum())}; first bad indices {idx}; "
            f"actual {[float(a[tuple(i)]) for i in idx]} expected {[float(e[tuple(i)]) for i in idx]}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dist_env_vars(rank: int, world: int, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "LOCAL_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def smoke_overrides(tmp_path, *extra: str) -> list[str]:
    return [f"run.out_dir={tmp_path}", *extra]


def set_env(vars: dict[str, str]) -> None:
    os.environ.update(vars)
