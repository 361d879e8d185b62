"""Clocks for the trace: wall-clock spans of stages, and device work by the device's clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


@contextmanager
def span(spans: dict[str, tuple[float, float]], stage: str) -> Iterator[None]:
    start = time.time()
    try:
        yield
    finally:
        spans[stage] = (round(start, 3), round(time.time(), 3))


class DeviceClock:
    """Times the work queued on a device between ``start`` and ``stop``. On CUDA the calls
    return before the device is done, so events recorded on the stream do the timing and
    ``elapsed_ms`` waits for the last one (call it after the device lock is released); on a
    CPU the work is done when the call returns and the wall clock is the device's."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None
        self._wall = (0.0, 0.0)

    def start(self) -> None:
        if self.cuda:
            self._events = (
                torch.cuda.Event(enable_timing=True),
                torch.cuda.Event(enable_timing=True),
            )
            self._events[0].record()
        self._wall = (time.perf_counter(), 0.0)

    def stop(self) -> None:
        if self._events is not None:
            self._events[1].record()
        self._wall = (self._wall[0], time.perf_counter())

    def elapsed_ms(self) -> float:
        if self._events is None:
            return ms(self._wall[1] - self._wall[0])
        self._events[1].synchronize()
        return round(self._events[0].elapsed_time(self._events[1]), 2)
