"""Time spent per named stage of a loop, measured where the work runs.

On CUDA, kernels run asynchronously: ``time.perf_counter`` around a stage measures how long the host took to
queue it, not how long the GPU took to run it (the time then shows up in whichever later stage first waits for
the GPU). So on CUDA a stage is bracketed by two CUDA events recorded on the current stream, and its duration is
the GPU-timeline time between them. Reading an event's time waits for it, so durations are resolved lazily: events
the GPU has already passed are folded in as new stages are added (``Event.query`` does not wait), and
:meth:`StageTimer.totals` resolves the rest. On CPU, marks are ``perf_counter`` readings.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Union

import torch

Mark = Union[float, "torch.cuda.Event"]


class StageTimer:
    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self._totals: dict[str, float] = defaultdict(float)
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    def mark(self) -> Mark:
        """A point in time: a CUDA event recorded on the current stream, or a perf_counter reading on CPU."""
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def add(self, stage: str, start: Mark, end: Mark | None = None) -> None:
        """Add the time from ``start`` to ``end`` (default: now) to ``stage``; never waits for the GPU."""
        end = self.mark() if end is None else end
        if not self.cuda:
            self._totals[stage] += end - start
            return
        self._pending.append((stage, start, end))
        self._resolve(wait=False)

    def _resolve(self, wait: bool) -> None:
        # Events complete in stream order, so the first one not yet reached ends the resolvable prefix.
        done = 0
        for stage, start, end in self._pending:
            if not wait and not end.query():
                break
            if wait:
                end.synchronize()
            self._totals[stage] += start.elapsed_time(end) / 1000.0
            done += 1
        del self._pending[:done]

    def totals(self) -> dict[str, float]:
        """Seconds per stage so far (waits for pending CUDA events: call it off the hot path)."""
        self._resolve(wait=True)
        return dict(self._totals)
