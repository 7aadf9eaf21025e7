"""StageTimer (cjepa/utils/stage_timer.py): perf_counter on CPU; CUDA events resolved without waiting on the hot
path."""

import time

import pytest
import torch

from cjepa.utils.stage_timer import StageTimer


def test_cpu_stages_accumulate_wall_time():
    """On CPU a stage is the perf_counter time between its marks; stages add up separately, explicit ends count."""
    timer = StageTimer(torch.device("cpu"))
    assert not timer.cuda
    for _ in range(2):
        start = timer.mark()
        time.sleep(0.02)
        timer.add("sleep", start)
    start = timer.mark()
    timer.add("fixed", start, start + 1.5)
    t = timer.totals()
    assert 0.04 <= t["sleep"] < 1.0 and t["fixed"] == pytest.approx(1.5)


class FakeGPU:
    """A GPU timeline for fake events: it has run everything up to `now_ms`; waiting for an event advances it."""

    def __init__(self, now_ms):
        self.now_ms, self.waits = now_ms, 0

    def event(self, time_ms):
        return FakeEvent(self, time_ms)


class FakeEvent:
    def __init__(self, gpu, time_ms):
        self.gpu, self.time_ms = gpu, time_ms

    def query(self):
        return self.time_ms <= self.gpu.now_ms

    def synchronize(self):
        self.gpu.waits += 1
        self.gpu.now_ms = max(self.gpu.now_ms, self.time_ms)

    def elapsed_time(self, end):
        assert self.query() and end.query(), "reading an event's time before the GPU reached it would wait for the GPU"
        return end.time_ms - self.time_ms


def test_cuda_event_durations_are_read_only_when_reached_or_asked_for():
    """With CUDA events, add() folds in only the stages whose end event the GPU has passed (query, no wait), in
    stream order; totals() waits for the rest. A stage lasts the GPU-timeline time between its events."""
    timer = StageTimer(torch.device("cpu"))
    timer.cuda = True  # the event bookkeeping, with events the test controls
    gpu = FakeGPU(now_ms=300.0)
    timer.add("encode", gpu.event(0.0), gpu.event(250.0))
    timer.add("predictor", gpu.event(250.0), gpu.event(1250.0))
    timer.add("encode", gpu.event(1250.0), gpu.event(1750.0))
    assert gpu.waits == 0 and dict(timer._totals) == {"encode": 0.25} and len(timer._pending) == 2
    gpu.now_ms = 1300.0  # the predictor stage has run on the GPU: the next add folds it in, still without waiting
    timer.add("decode", gpu.event(1750.0), gpu.event(1800.0))
    assert gpu.waits == 0 and dict(timer._totals) == {"encode": 0.25, "predictor": 1.0}
    assert timer.totals() == {"encode": 0.75, "predictor": 1.0, "decode": 0.05}
    assert gpu.waits > 0 and not timer._pending


@pytest.mark.gpu
def test_cuda_stage_time_is_the_gpu_time_of_its_kernels():
    """A stage of queued matmuls gets their GPU time, not the microseconds the host took to queue them."""
    timer = StageTimer(torch.device("cuda"))
    x = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    host0 = time.perf_counter()
    start = timer.mark()
    for _ in range(20):
        x = x @ x / 64.0
    timer.add("matmul", start)
    queued = time.perf_counter() - host0
    torch.cuda.synchronize()
    assert timer.totals()["matmul"] > 2 * queued
