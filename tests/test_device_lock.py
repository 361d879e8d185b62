"""The device lock covers device work only: with a stand-in engine that sleeps "on the device"
and stand-in host encodes, host stages of earlier batches run while a later batch holds the
device, and a host encode that blocks does not keep the next batch from its model call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from tests.test_pipeline_stages import CONFIG, StandInEngine, photo
from workers.outputs import encode_effect
from workers.pipeline import BatchResult, JobInput, Pipeline
from workers.predictor import Segmenter


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as pool:
        yield pool


def _batches(formats: tuple[str, ...]) -> list[list[JobInput]]:
    """One batch of two jobs per format: the encoder tells batches apart by format."""
    return [
        [JobInput(f"b{k}-{i}", photo(seed=k * 2 + i), ("color",), 96, fmt) for i in range(2)]
        for k, fmt in enumerate(formats)
    ]


def _device(result: BatchResult) -> tuple[float, float]:
    return result.spans["inference"][0], result.spans["effects"][1]


def test_host_stages_of_two_batches_overlap_the_next_batchs_device_stage() -> None:
    formats = ("png", "webp", "jpg+mask")
    arrived: set[str] = set()
    everyone = threading.Condition()
    waited: list[bool] = []

    def encode(
        name: str, colour: np.ndarray, alpha: np.ndarray, fmt: str, icc: bytes | None
    ) -> bytes:
        # Each batch's encodes wait until every batch has reached its host stage: the first
        # two can only get there while the last holds (or has held) the device.
        with everyone:
            arrived.add(fmt)
            everyone.notify_all()
            waited.append(everyone.wait_for(lambda: len(arrived) == len(formats), timeout=60))
        return encode_effect(name, colour, alpha, fmt, icc)

    engine = StandInEngine(seconds=0.3)
    # Threads enough for the waiting encodes (two a batch) and the decodes and masks beside.
    with ThreadPoolExecutor(10) as pool, ThreadPoolExecutor(3) as worker_threads:
        pipeline = Pipeline(Segmenter(engine, CONFIG), pool, encode_effect=encode)
        results = list(worker_threads.map(pipeline.process, _batches(formats)))
    assert waited and all(waited), "a batch's encodes held the device from the others"
    assert all(o.ok for r in results for o in r.outcomes)
    first, second, third = sorted(results, key=lambda r: _device(r)[0])
    on_device = [_device(r) for r in (first, second, third)]
    for (_, end), (start, _) in zip(on_device, on_device[1:], strict=False):
        assert end <= start, f"two batches on the device at once: {on_device}"
    # The trace: the first two batches were in their host stage when the third left the device.
    _, end = _device(third)
    for earlier in (first, second):
        host = earlier.spans["host"]
        assert host[0] <= end <= host[1], (earlier.spans, third.spans)
    for r in results:
        # Held for the model's 0.3 s at least; the device work is timed inside the hold (on a
        # CPU by the wall clock).
        assert 300 <= r.device_ms <= r.lock_held_ms, (r.device_ms, r.lock_held_ms)


class _SignallingEngine(StandInEngine):
    """Sets ``second_call`` when the model is called for the second time."""

    def __init__(self) -> None:
        super().__init__()
        self.second_call = threading.Event()

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        out = super().predict(batch)
        if len(self.calls) == 2:
            self.second_call.set()
        return out


def test_a_host_encode_that_blocks_does_not_delay_the_next_batchs_model_call(
    pool: ThreadPoolExecutor,
) -> None:
    engine = _SignallingEngine()
    seen: list[bool] = []

    def blocking(
        name: str, colour: np.ndarray, alpha: np.ndarray, fmt: str, icc: bytes | None
    ) -> bytes:
        # The first batch's encodes wait until the second batch has had its model call:
        # were the lock held through the encodes, that call could never come.
        seen.append(engine.second_call.wait(timeout=30))
        return encode_effect(name, colour, alpha, fmt, icc)

    pipeline = Pipeline(Segmenter(engine, CONFIG), pool, encode_effect=blocking)
    first, second = _batches(("png", "png"))
    with ThreadPoolExecutor(2) as worker_threads:
        running = worker_threads.submit(pipeline.process, first)
        while not engine.calls:  # the first batch is on the device (or past it)
            time.sleep(0.01)
        then = worker_threads.submit(pipeline.process, second)
        results = [running.result(), then.result()]
    assert seen and all(seen), "the second model call waited for the first batch's encodes"
    assert all(o.ok for r in results for o in r.outcomes)
