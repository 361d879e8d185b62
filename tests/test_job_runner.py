"""The job runner on real Redis and local storage, with the stand-in engine: adaptive quality
under load (and what it means for the result cache), previews on the record."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from jobs.adaptive import AdaptiveQuality
from jobs.dispatch import Dispatcher
from jobs.record import JobRecord
from jobs.runner import JobRunner
from jobs.store import Change, JobStore
from storage import StorageSettings, open_store
from storage.keys import staging_key
from storage.result_cache import ResultCache
from tests.test_pipeline_stages import CONFIG, StandInEngine, photo
from tests.test_result_cache import Queue, submit
from workers.build import BatchProcessor
from workers.pipeline import Pipeline
from workers.predictor import Segmenter

REDUCED = 32


class WatchedJobStore(JobStore):
    """Keeps every state the records went through, to show what was visible when."""

    states: list[JobRecord]

    def update(self, job_id: str, change: Change) -> JobRecord | None:
        record = super().update(job_id, change)
        if record is not None:
            self.states.append(record)
        return record


@pytest.fixture
def dispatcher(redis_client: redis.Redis, tmp_path: Path) -> Dispatcher:
    jobs = WatchedJobStore(redis_client, ttl_seconds=60)
    jobs.states = []
    store = open_store(StorageSettings(local_dir=tmp_path / "files"))
    return Dispatcher(jobs, ResultCache(redis_client), store, Queue())


class Depth:
    """The gpu queue's depth as the runner reads it, set by the test."""

    def __init__(self) -> None:
        self.jobs = 0

    def __call__(self) -> int:
        return self.jobs


@pytest.fixture
def depth() -> Depth:
    return Depth()


@pytest.fixture
def runner(dispatcher: Dispatcher, depth: Depth) -> Iterator[JobRunner]:
    with ThreadPoolExecutor(2) as pool:
        pipeline = Pipeline(Segmenter(StandInEngine(), CONFIG, reduced_input=REDUCED), pool)
        processor = BatchProcessor(pipeline)
        yield JobRunner(dispatcher, processor, quality=AdaptiveQuality(depth, 3, REDUCED))


def queued(
    dispatcher: Dispatcher, key: str, effects: list[str], preview: bool = False
) -> JobRecord:
    """A job recorded and dispatched as the API does, its staged input a real photo."""
    record = submit(dispatcher, key, effects)
    if preview:
        options = replace(record.options, preview=True)
        dispatcher.jobs.update(record.id, lambda r: replace(r, options=options))
    dispatcher.store.save(staging_key(record.id), photo(seed=len(key)), "image/jpeg")
    return record


def test_a_deep_queue_runs_jobs_reduced_and_keeps_them_out_of_the_cache(
    runner: JobRunner,
    dispatcher: Dispatcher,
    depth: Depth,
) -> None:
    depth.jobs = 4  # deeper than the threshold of 3
    leader = queued(dispatcher, "k", ["color", "popart"])
    follower = queued(dispatcher, "k", ["popart"])
    assert follower.cache == "joined"
    assert runner.run([leader.id]) == {leader.id: "succeeded"}

    done = dispatcher.jobs.get(leader.id)
    assert done is not None and done.model_input == REDUCED
    assert all("/k/" not in out.key for out in done.outputs.values()), "stored apart"
    assert dispatcher.cache.lookup("k", ["color", "popart", "mask"]) == {}, "never cached"
    # The attached job takes the leader's (reduced) outputs rather than computing again.
    joined = dispatcher.jobs.get(follower.id)
    assert joined is not None and joined.status == "succeeded"
    assert joined.model_input == REDUCED and joined.cache == "joined"
    assert joined.outputs["popart"] == done.outputs["popart"]

    # Once the queue drains, the same photo is computed again at full quality, and cached.
    depth.jobs = 3
    again = queued(dispatcher, "k", ["color"])
    assert again.cache == "miss"
    runner.run([again.id])
    full = dispatcher.jobs.get(again.id)
    assert full is not None and full.model_input == CONFIG.input_size
    assert set(dispatcher.cache.lookup("k", ["color", "mask"])) == {"color", "mask"}


def test_a_job_with_cached_outputs_runs_at_full_quality_under_load(
    runner: JobRunner,
    dispatcher: Dispatcher,
    depth: Depth,
) -> None:
    first = queued(dispatcher, "k2", ["color"])
    runner.run([first.id])  # full quality: color and the mask cached
    depth.jobs = 10
    partial = queued(dispatcher, "k2", ["color", "popart"])
    assert partial.cache == "partial"
    runner.run([partial.id])
    done = dispatcher.jobs.get(partial.id)
    assert done is not None and done.computed == ("popart",)
    assert done.model_input == CONFIG.input_size, "its popart must match the cached mask"


def test_a_preview_is_stored_and_recorded_before_the_job_ends(
    runner: JobRunner,
    dispatcher: Dispatcher,
) -> None:
    job = queued(dispatcher, "k3", ["color", "dithering"], preview=True)
    runner.run([job.id])
    states = dispatcher.jobs.states  # type: ignore[attr-defined]
    first = next(r for r in states if r.id == job.id and r.preview)
    assert first.status == "processing", "the preview came while the job ran"
    preview = first.preview
    assert set(preview) == {"color", "dithering"}
    for out in preview.values():
        assert out.content_type == "image/webp" and max(out.width, out.height) <= 256
        assert dispatcher.store.exists(out.key)
    done = dispatcher.jobs.get(job.id)
    assert done is not None and done.status == "succeeded" and done.preview == preview
    assert "preview_ms" in done.timings


def test_adaptive_quality_reads_the_depth_and_falls_back_to_full_quality() -> None:
    def unreadable() -> int:
        raise redis.ConnectionError("broker down")

    assert AdaptiveQuality(lambda: 4, 3, REDUCED).model_input() == REDUCED
    assert AdaptiveQuality(lambda: 3, 3, REDUCED).model_input() is None
    assert AdaptiveQuality(lambda: 99, 0, REDUCED).model_input() is None, "0: never"
    assert AdaptiveQuality(lambda: 99, 3, None).model_input() is None, "the gate said no"
    assert AdaptiveQuality(unreadable, 3, REDUCED).model_input() is None
