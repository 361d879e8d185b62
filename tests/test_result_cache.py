"""The result cache, in-flight de-duplication and housekeeping, on a real Redis and real
stores; the queue is a list (what was enqueued is what a worker would receive)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from jobs.cleanup import remove_stale_staging
from jobs.dispatch import Dispatcher
from jobs.record import JobError, JobRecord
from jobs.store import JobStore, ending
from storage import ObjectStore, StorageSettings, open_store
from storage.keys import staging_key
from storage.result_cache import ResultCache, StoredOutput, output_names
from tests.records import job_record, stored

ALL = ["color", "enhancedblackwhite", "popart", "dithering", "mask"]


def entry(content_key: str, name: str) -> StoredOutput:
    return stored(content_key, name)


@pytest.fixture
def cache(redis_client: redis.Redis) -> ResultCache:
    return ResultCache(redis_client, ttl_seconds=60)


def test_claims_lead_then_follow_then_hit(cache: ResultCache) -> None:
    first = cache.claim("k1", "job-a", ALL)
    assert first.outcome == "lead" and first.missing == tuple(ALL)
    second = cache.claim("k1", "job-b", ["popart", "mask"])
    assert second.outcome == "follow" and second.leader == "job-a"
    cache.store("k1", {name: entry("k1", name) for name in ALL})
    assert cache.release("k1", "job-a") == ["job-b"]
    assert cache.release("k1", "job-a") == [], "followers are handed over once"
    assert cache.claim("k1", "job-c", ["color", "mask"]).outcome == "hit"


def test_only_missing_outputs_are_claimed(cache: ResultCache) -> None:
    cache.store("k2", {"color": entry("k2", "color"), "mask": entry("k2", "mask")})
    assert cache.lookup("k2", ["color", "popart", "mask"]) == {
        "color": entry("k2", "color"),
        "mask": entry("k2", "mask"),
    }
    claim = cache.claim("k2", "job-a", ["color", "popart", "mask"])
    assert claim.outcome == "lead" and claim.missing == ("popart",)
    # job-a computes popart only, so a job that needs dithering cannot wait for it.
    other = cache.claim("k2", "job-b", ["dithering", "mask"])
    assert other.outcome == "lead" and other.missing == ("dithering",)
    assert cache.claim("k2", "job-c", ["popart", "color"]).leader == "job-a"


def test_identical_claims_at_once_elect_one_leader(cache: ResultCache) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        outcomes.append(cache.claim("k3", f"job-{i}", ALL).outcome)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["follow"] * 7 + ["lead"]


def test_a_canceled_follower_is_detached(cache: ResultCache) -> None:
    cache.claim("k5", "job-a", ALL)
    for follower in ("job-b", "job-c", "job-d"):
        assert cache.claim("k5", follower, ALL).leader == "job-a"
    assert cache.detach("k5", "job-a", "job-c")
    assert not cache.detach("k5", "job-a", "job-c"), "detached once"
    assert cache.detach("k5", "job-a", "job-b") and cache.detach("k5", "job-a", "job-d")
    assert cache.claim("k5", "job-e", ALL).leader == "job-a", "the emptied entry still leads"
    assert cache.release("k5", "job-a") == ["job-e"]
    assert not cache.detach("k5", "job-a", "job-e"), "after the hand-over there is no list"


def test_old_claims_are_listed_for_the_sweeper(cache: ResultCache) -> None:
    cache.claim("k4", "job-a", ALL)
    assert cache.claims_older_than(3600) == []
    time.sleep(0.05)
    assert cache.claims_older_than(0.01) == [("k4", "job-a")]
    cache.release("k4", "job-a")
    assert cache.claims_older_than(0) == []


# --- the dispatcher: how attached jobs end ---------------------------------------------------


class Queue(list[str]):
    broken = False

    def __call__(self, job_id: str) -> None:
        if self.broken:
            raise ConnectionError("broker down")
        self.append(job_id)


@pytest.fixture
def queue() -> Queue:
    return Queue()


@pytest.fixture
def dispatcher(
    redis_client: redis.Redis, cache: ResultCache, tmp_path: Path, queue: Queue
) -> Dispatcher:
    store = open_store(StorageSettings(local_dir=tmp_path / "files"))
    return Dispatcher(JobStore(redis_client, ttl_seconds=60), cache, store, queue)


def submit(dispatcher: Dispatcher, content_key: str, effects: list[str]) -> JobRecord:
    """Stage, record and dispatch a job as the API does."""
    record = job_record(effects=tuple(effects), content_key=content_key)
    dispatcher.store.save(staging_key(record.id), b"photo", "application/octet-stream")
    dispatcher.jobs.create(record)
    return dispatcher.dispatch(record)[1]


def compute(dispatcher: Dispatcher, leader: JobRecord) -> None:
    """What a worker does for a leader: store the outputs, cache them, end the job."""
    names = output_names(leader.options.effects)
    outputs = {name: entry(leader.content_key, name) for name in names}
    dispatcher.cache.store(leader.content_key, outputs)
    dispatcher.finish(leader.id, outputs)


def status(dispatcher: Dispatcher, job: JobRecord) -> str:
    return dispatcher.jobs.get(job.id).status  # type: ignore[union-attr]


def staged(dispatcher: Dispatcher, job: JobRecord) -> bool:
    return dispatcher.store.exists(staging_key(job.id))


def test_followers_finish_with_their_leader(dispatcher: Dispatcher, queue: Queue) -> None:
    leader = submit(dispatcher, "k", ["color", "popart"])
    follower = submit(dispatcher, "k", ["popart"])
    assert leader.cache == "miss" and follower.cache == "joined"
    assert queue == [leader.id], "the follower never reaches the queue"
    compute(dispatcher, leader)
    done = dispatcher.jobs.get(follower.id)
    assert done is not None and done.status == "succeeded" and done.cache == "joined"
    assert list(done.outputs) == ["popart", "mask"]
    assert done.outputs["popart"] == entry("k", "popart")
    assert not staged(dispatcher, follower) and not staged(dispatcher, leader)


def test_a_later_identical_job_is_a_hit(dispatcher: Dispatcher, queue: Queue) -> None:
    compute(dispatcher, submit(dispatcher, "k", ["color", "popart"]))
    again = submit(dispatcher, "k", ["popart"])
    assert again.status == "succeeded" and again.cache == "hit"
    assert len(queue) == 1 and not staged(dispatcher, again)


def test_a_bad_image_fails_its_followers_alike(dispatcher: Dispatcher) -> None:
    leader = submit(dispatcher, "k", ["color"])
    follower = submit(dispatcher, "k", ["color"])
    dispatcher.fail(leader.id, "invalid_image", "cannot decode")
    done = dispatcher.jobs.get(follower.id)
    assert done is not None and done.status == "failed"
    assert done.error == JobError("invalid_image", "cannot decode")
    assert not staged(dispatcher, follower)


@pytest.mark.parametrize("end", ["storage_error", "canceled"])
def test_followers_of_a_leader_that_did_not_deliver_run_on_their_own(
    dispatcher: Dispatcher, queue: Queue, end: str
) -> None:
    leader = submit(dispatcher, "k", ["color"])
    followers = [submit(dispatcher, "k", ["color"]) for _ in range(3)]
    if end == "canceled":  # as DELETE does it (the worker later skips and settles it again)
        dispatcher.canceled(dispatcher.jobs.update(leader.id, ending("canceled")))  # type: ignore[arg-type]
    else:
        dispatcher.fail(leader.id, end, "the bucket is down")
    # The first follower leads now; the other two follow it; none was lost or failed.
    assert queue == [leader.id, followers[0].id]
    assert [status(dispatcher, f) for f in followers] == ["queued"] * 3
    assert all(staged(dispatcher, f) for f in followers)
    compute(dispatcher, dispatcher.jobs.get(followers[0].id))  # type: ignore[arg-type]
    assert [status(dispatcher, f) for f in followers] == ["succeeded"] * 3


def test_a_refused_enqueue_fails_the_job_and_hands_over(
    dispatcher: Dispatcher, queue: Queue
) -> None:
    queue.broken = True
    with pytest.raises(ConnectionError):
        submit(dispatcher, "k", ["color"])
    (job_id,) = [k.decode().rsplit(":", 1)[1] for k in dispatcher.jobs.redis.keys("cutout:job:*")]
    record = dispatcher.jobs.get(job_id)
    assert record is not None and record.error.code == "enqueue_failed"  # type: ignore[union-attr]
    assert not dispatcher.store.exists(staging_key(job_id))
    queue.broken = False
    assert submit(dispatcher, "k", ["color"]).cache == "miss", "no stale leader is left"


def test_the_sweeper_settles_leaders_that_vanished(dispatcher: Dispatcher, queue: Queue) -> None:
    leader = submit(dispatcher, "k", ["color"])
    follower = submit(dispatcher, "k", ["color"])
    assert dispatcher.sweep(0) == 0, "a queued leader is left to Celery's redelivery"
    dispatcher.jobs.redis.delete(f"cutout:job:{leader.id}")  # its record expired
    assert dispatcher.sweep(0) == 1
    assert queue == [leader.id, follower.id]
    assert dispatcher.sweep(0) == 0


# --- staged inputs ---------------------------------------------------------------------------


def test_stale_staged_inputs_are_removed(
    object_store: ObjectStore, redis_client: redis.Redis
) -> None:
    jobs = JobStore(redis_client, ttl_seconds=60)
    for job_id, state in [("queued1", "queued"), ("done1", "succeeded"), ("orphan1", None)]:
        object_store.save(staging_key(job_id), b"x", "application/octet-stream")
        if state:
            jobs.create(job_record(job_id, state))
    object_store.save("results/k/mask.png", b"m", "image/png", immutable=True)
    assert remove_stale_staging(object_store, jobs, grace_seconds=600) == 0, "all too young"
    later = time.time() + 3600
    assert remove_stale_staging(object_store, jobs, grace_seconds=600, now=later) == 2
    assert [o.key for o in object_store.iter_objects("staging/")] == ["staging/queued1"]
    assert object_store.exists("results/k/mask.png")


def test_every_way_a_job_ends_runs_the_hook_once(
    redis_client: redis.Redis, cache: ResultCache, tmp_path: Path, queue: Queue
) -> None:
    """The job store's ``on_terminal`` hook (webhook, metrics) runs once per job, whether a
    worker, a hand-over, a hit, a cancel or a refused enqueue ended it."""
    ended: list[str] = []
    jobs = JobStore(redis_client, ttl_seconds=60, on_terminal=lambda r: ended.append(r.id))
    store = open_store(StorageSettings(local_dir=tmp_path / "files"))
    dispatcher = Dispatcher(jobs, cache, store, queue)
    leader = submit(dispatcher, "k", ["color"])
    followers = [submit(dispatcher, "k", ["color"]) for _ in range(3)]
    canceled = jobs.update(followers[2].id, ending("canceled"))
    dispatcher.canceled(canceled)  # type: ignore[arg-type]
    dispatcher.fail(leader.id, "storage_error", "the bucket is down")  # hands over
    dispatcher.fail(leader.id, "storage_error", "again")  # already ended: nothing
    compute(dispatcher, jobs.get(followers[0].id))  # type: ignore[arg-type]
    hit = submit(dispatcher, "k", ["color"])
    bad = submit(dispatcher, "k2", ["color"])
    dispatcher.fail(bad.id, "invalid_image", "cannot decode")
    queue.broken = True
    with pytest.raises(ConnectionError):
        submit(dispatcher, "k3", ["color"])
    assert ended[:6] == [followers[2].id, leader.id, followers[0].id,
                         followers[1].id, hit.id, bad.id]  # fmt: skip
    assert len(ended) == 7 and jobs.get(ended[6]).error.code == "enqueue_failed"  # type: ignore[union-attr]
