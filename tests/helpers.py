"""Helpers shared by tests: verbose tensor comparison, tiny configs, multi-process spawning."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "smoke" / "cpu.yaml")


def assert_close_verbose(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float,
                         name: str = "tensor") -> None:
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


# Tensor methods that copy a value to the host: on a GPU each waits for every kernel queued before it.
HOST_READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__")


class HostReads:
    """Counts host reads of tensors made by the project's code, and ``torch.distributed.all_reduce`` calls, under
    the current ``label`` (the training step, say), while active as a context manager.

    On a CPU every tensor is a host tensor, so a device read cannot be recognised by its tensor; reads are told by
    their caller instead: only calls from files of the ``cjepa`` package count. Reads torch makes on its own
    host-side state (AdamW keeps its step counters on the CPU by design) are not ours and do not count, nor do
    those of ``cjepa/data`` by default: the data path works on host tensors before the transfer by design (the
    batch sampler turns its index tensors into lists for the DataLoader).
    """

    def __init__(self, host_side: tuple[str, ...] = ("cjepa/data/",)):
        self.host_side = tuple(str(REPO / p) for p in host_side)
        self.label = None
        self.reads: Counter = Counter()
        self.sites: dict = defaultdict(list)  # label -> ["method file:line", ...], for failure messages
        self.collectives: Counter = Counter()
        self._saved: dict = {}

    def __enter__(self) -> "HostReads":
        import torch.distributed as dist

        project = str(REPO / "cjepa")
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)
            self._saved[(torch.Tensor, name)] = original

            def counted(t, *args, _original=original, _name=name, **kwargs):
                caller = sys._getframe(1)
                where = caller.f_code.co_filename
                if where.startswith(project) and not where.startswith(self.host_side):
                    self.reads[self.label] += 1
                    self.sites[self.label].append(f"{_name} {caller.f_code.co_filename}:{caller.f_lineno}")
                return _original(t, *args, **kwargs)

            setattr(torch.Tensor, name, counted)
        all_reduce = dist.all_reduce
        self._saved[(dist, "all_reduce")] = all_reduce

        def counted_all_reduce(*args, **kwargs):
            self.collectives[self.label] += 1
            return all_reduce(*args, **kwargs)

        dist.all_reduce = counted_all_reduce
        return self

    def __exit__(self, *exc) -> None:
        for (owner, name), original in self._saved.items():
            setattr(owner, name, original)
        self._saved.clear()


class OnDevice(torch.Tensor):
    """A CPU tensor standing for one on an accelerator, for host-read tests on machines without one: results of
    ops on it are OnDevice too, and each host read of one is recorded in ``OnDevice.reads`` with the project line
    that made it."""

    reads: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            ours = [
                f"{f.filename}:{f.lineno}"
                for f in traceback.extract_stack()
                if f.filename.startswith(str(REPO / "cjepa"))
            ]
            cls.reads.append(f"{name} at {ours[-1] if ours else 'torch'}")
        return super().__torch_function__(func, types, args, kwargs or {})


# A CPU device object that stands for an accelerator in host-read tests: code given it as its device runs on the CPU
# (tensors moved there report device "cpu"), but its transfers, ``.to(DEVICE)``, can be told from host-side moves.
STAND_IN_DEVICE = torch.device("cpu", 0)


@contextlib.contextmanager
def transfers_to_stand_in_device():
    """While active, ``Tensor.to(STAND_IN_DEVICE)`` returns :class:`OnDevice` tensors: what code moves to its device
    counts as device memory, what stays on the host does not. Yields the list of host reads of marked tensors."""
    original = torch.Tensor.to

    def to(t, *args, **kwargs):
        out = original(t, *args, **kwargs)
        targets = [*args, kwargs.get("device")]
        if any(isinstance(a, (torch.device, str)) and torch.device(a) == STAND_IN_DEVICE for a in targets):
            out = out.as_subclass(OnDevice)
        return out

    OnDevice.reads = []
    torch.Tensor.to = to
    try:
        yield OnDevice.reads
    finally:
        torch.Tensor.to = original


def protocol_members(protocol: type) -> list[str]:
    """The names a ``typing.Protocol`` declares: its methods, properties and annotated attributes."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n,
              v in vars(protocol).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return sorted(names)


def missing_members(cls: type, protocol: type, instance_attrs: tuple[str, ...] = ()) -> list[str]:
    """The members of ``protocol`` that ``cls`` does not define (looked up on the class, without calling
    properties); ``instance_attrs`` are set in ``__init__`` and not looked for."""
    import inspect

    missing = []
    for name in protocol_members(protocol):
        if name in instance_attrs:
            continue
        try:
            inspect.getattr_static(cls, name)
        except AttributeError:
            missing.append(name)
    return missing


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.2) -> None:
    """Poll ``predicate`` until it holds; an AssertionError naming ``what`` after ``timeout_s`` seconds."""
    t0 = time.time()
    while not predicate():
        if time.time() - t0 > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
