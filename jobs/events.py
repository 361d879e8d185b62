"""A job's life as a stream of events: ``queued``, ``processing``, ``preview`` and one final
``succeeded`` / ``failed`` / ``canceled``, for ``GET /api/v2/jobs/<id>/events``.

Changes travel over Redis pub/sub: ``JobStore.update`` publishes every new record on the job's
channel in the transaction that writes it, whichever process made the change (a gpu worker
starting or ending a job, the API canceling it, the io worker's sweep). Pub/sub rather than a
stream per job because the record itself is the durable truth: a follower subscribes *first*,
then reads the record, then follows the published records, so a change between the read and
the subscription cannot be missed, and a message lost while a connection was down is made up
by reading the record again. Pub/sub needs no history, no trimming, and one connection per
process however many streams it serves (``ChangeFeed``); a blocking ``XREAD`` per open stream
would need a connection each.

Event ids are the event's rank in a job's life (1 queued, 2 processing, 3 preview, 4 the end),
so a client that reconnects with ``Last-Event-ID`` gets only what it has not seen; events only
ever move forward, and a finished job always answers its final event at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from jobs.record import TERMINAL, JobRecord
from jobs.store import JobStore, decode

log = logging.getLogger("cutout.events")

RANKS = {"queued": 1, "processing": 2, "preview": 3}
FINAL_RANK = 4
RECONNECT_SECONDS = 0.5


def event_kind(record: JobRecord) -> str:
    """What the record's state is, as an event: its status, or ``preview`` for a job still
    processing whose preview is stored."""
    if record.status == "processing" and record.preview:
        return "preview"
    return record.status


def event_rank(kind: str) -> int:
    return FINAL_RANK if kind in TERMINAL else RANKS[kind]


@dataclass(frozen=True)
class JobEvent:
    kind: str  # queued | processing | preview | succeeded | failed | canceled
    id: int  # its rank in the job's life: what Last-Event-ID resumes after
    record: JobRecord

    @property
    def final(self) -> bool:
        return self.kind in TERMINAL


class Subscription:
    """The records published for one job, as they arrive; ``None`` in the queue means "you may
    have missed some: read the record again" (the feed reconnected)."""

    def __init__(self, feed: ChangeFeed, job_id: str) -> None:
        self.feed = feed
        self.job_id = job_id
        self.queue: queue.Queue[JobRecord | None] = queue.Queue()

    def next(self, timeout: float) -> JobRecord | None | bool:
        """The next published record; None when the feed asks for a fresh read; False when
        nothing came for ``timeout`` s."""
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return False

    def close(self) -> None:
        self.feed.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeFeed:
    """One pub/sub connection per process, on every job's channel, handing each published
    record to the subscriptions of that job. Started on first use (after a fork)."""

    def __init__(self, client: redis.Redis, jobs: JobStore) -> None:
        self.redis = client
        self.pattern = jobs.channel_pattern
        self.prefix = jobs.channel("")
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, job_id: str, timeout: float = 10.0) -> Subscription:
        """A subscription that receives every record published from now on (once this returns,
        the feed's own subscription is confirmed by Redis)."""
        self._start()
        if not self._listening.wait(timeout):
            raise ConnectionError("the job change feed could not subscribe to Redis")
        subscription = Subscription(self, job_id)
        with self._lock:
            self._subscriptions.setdefault(job_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._subscriptions.get(subscription.job_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[subscription.job_id]

    @property
    def open_subscriptions(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscriptions.values())

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="job-feed", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            pubsub = self.redis.pubsub()
            try:
                pubsub.psubscribe(self.pattern)
                for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        self._listening.set()
                        self._ask_all_to_reread()  # anything published while we were away
                    elif message["type"] == "pmessage":
                        self._deliver(message["channel"], message["data"])
            except redis.RedisError as exc:
                log.warning("job change feed lost Redis (%s); reconnecting", exc)
            finally:
                self._listening.clear()
                pubsub.close()
            self._ask_all_to_reread()
            time.sleep(RECONNECT_SECONDS)

    def _deliver(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        job_id = name[len(self.prefix) :]
        with self._lock:
            subscribers = list(self._subscriptions.get(job_id, ()))
        if not subscribers:
            return  # decode only what someone follows
        try:
            record = decode(data)
        except (ValueError, KeyError, TypeError):  # not a record: a stale publisher's status
            record = None
        for subscription in subscribers:
            subscription.queue.put(record)

    def _ask_all_to_reread(self) -> None:
        with self._lock:
            everyone = [s for subs in self._subscriptions.values() for s in subs]
        for subscription in everyone:
            subscription.queue.put(None)


def follow(
    subscription: Subscription,
    jobs: JobStore,
    first: JobRecord,
    last_event_id: int = 0,
    heartbeat: float = 15.0,
) -> Iterator[JobEvent | None]:
    """The job's events after ``last_event_id``, from ``first`` (read after subscribing) to its
    final event, which ends the iteration; ``None`` every ``heartbeat`` s without an event (the
    record is read again then, in case a change went by unseen). Ends early, with nothing
    more, if the record expires."""
    sent = last_event_id
    record: JobRecord | None = first
    while record is not None:
        kind = event_kind(record)
        rank = event_rank(kind)
        if record.ended:  # always, even to a client that saw it: it closes the stream
            yield JobEvent(kind, rank, record)
            return
        if rank > sent:
            sent = rank
            yield JobEvent(kind, rank, record)
        published = subscription.next(heartbeat)
        if published is False:
            yield None  # a heartbeat: nothing happened for a while
        if isinstance(published, JobRecord):
            record = published
        else:  # read it again: after a quiet spell, or the feed reconnected
            record = jobs.get(subscription.job_id)
