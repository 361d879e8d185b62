"""Queue-depth admission in one atomic step: a job is let in only while fewer than ``limit``
jobs wait on its queue, counting those let in but not yet queued.

Reading the depth and queueing are two steps apart (the upload is staged and recorded in
between), so concurrent submits that each read the depth first all saw room, and a limit of 20
let 24 or 27 of 40 in (issue 16). Here a Lua script counts the queue's broker lists plus the
admissions still in flight and, when there is room, records this one, all inside Redis, where
scripts run one at a time. An admission is withdrawn once its job is queued (the broker list
then counts it) or refused; one whose process died is forgotten after ``hold_seconds``.

That is atomic when the broker is the store's Redis (the default). With a broker elsewhere
(RabbitMQ, or a Redis of its own: ``CUTOUT_BROKER_URL``) the script cannot read its queue, so
the depth is read just before it and passed in: admissions still count atomically, but a
submit whose message lands between that read and the script can go uncounted, so concurrent
submits can overshoot by the few that race that way.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from jobs.queue import BrokerQueues, QueueReader

log = logging.getLogger("cutout.jobs")

# KEYS[1]: the admissions in flight (a sorted set scored by the server's time);
# KEYS[2..n]: the queue's broker lists, when they are in this Redis. ARGV: the limit, this
# admission's token, hold seconds, and the depth read elsewhere (0 when the lists are KEYS).
# Returns {1, depth} when admitted, {0, depth} when refused; depth counts what was waiting.
_ADMIT = """
local now = redis.call('TIME')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', seconds - tonumber(ARGV[3]))
local depth = redis.call('ZCARD', KEYS[1]) + tonumber(ARGV[4])
for i = 2, #KEYS do
  depth = depth + redis.call('LLEN', KEYS[i])
end
if depth >= tonumber(ARGV[1]) then
  return {0, depth}
end
redis.call('ZADD', KEYS[1], seconds, ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
return {1, depth}
"""


class QueueFull(Exception):
    def __init__(self, depth: int) -> None:
        super().__init__(f"{depth} jobs are waiting")
        self.depth = depth


class Admission:
    def __init__(
        self,
        client: redis.Redis,
        broker: QueueReader,
        prefix: str = "cutout",
        hold_seconds: float = 120.0,
    ) -> None:
        self.redis = client
        self.broker = broker
        self.prefix = prefix
        self.hold_seconds = hold_seconds
        self._admit = client.register_script(_ADMIT)

    def _key(self, queue: str) -> str:
        return f"{self.prefix}:admission:{queue}"

    @contextmanager
    def hold(self, queue: str, limit: int) -> Iterator[None]:
        """A place on ``queue`` for the job queued inside; raises ``QueueFull`` when at least
        ``limit`` jobs wait there or are being let in."""
        key, token = self._key(queue), uuid.uuid4().hex
        if isinstance(self.broker, BrokerQueues) and self.broker.redis is self.redis:
            lists, elsewhere = self.broker.lists(queue), 0
        else:
            lists, elsewhere = [], self.broker.depth(queue)
        admitted, depth = self._admit(
            keys=[key, *lists], args=[limit, token, self.hold_seconds, elsewhere]
        )
        if not admitted:
            raise QueueFull(int(depth))
        try:
            yield
        finally:
            try:
                self.redis.zrem(key, token)
            except redis.RedisError:  # a job queued is not failed for this: it expires
                log.warning("could not withdraw an admission to %s", queue, exc_info=True)
