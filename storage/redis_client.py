"""One Redis client from ``CUTOUT_REDIS_URL``: a plain server, or a primary found through Redis
Sentinel so that the job store, the result cache and the limiter survive losing a node.

Sentinel URLs take the form the limiter (``limits``) reads too, so one setting serves all:
``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name`` (database 0; the
password is the primary's and the sentinels'). Celery wants its own spelling of the same thing
for its result backend (and for the broker when it is this Redis): ``celery_redis``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
# A failover takes seconds (sentinels agree, promote, announce): a command retried with backoff
# for about that long lands on the new primary instead of failing its request.
FAILOVER_RETRIES = 12
FAILOVER_BACKOFF = ExponentialBackoff(cap=1.0, base=0.05)


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: list[tuple[str, int]]
    service: str
    username: str | None = None
    password: str | None = None

    def auth(self) -> dict[str, str]:
        auth = {"username": self.username, "password": self.password}
        return {key: value for key, value in auth.items() if value}


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelTarget:
    """``ValueError`` says what is wrong with a ``redis+sentinel://`` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL: {url!r}")
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels = []
    for location in filter(None, hosts.split(",")):
        host, _, port = location.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel {location!r} in CUTOUT_REDIS_URL must be host:port")
        sentinels.append((host, int(port)))
    service = parts.path.strip("/")
    if not sentinels or not service or "/" in service:
        raise ValueError(
            "CUTOUT_REDIS_URL must name sentinels and one service: "
            f"{SENTINEL_SCHEME}://host:port[,host:port]/service_name"
        )
    return SentinelTarget(
        sentinels,
        service,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
    )


def open_redis(url: str, **options: Any) -> redis.Redis:
    """A client of the server ``url`` names; through Sentinel, of whichever node is primary
    now, with commands retried across a failover."""
    if not is_sentinel(url):
        # redis-py 8 caps a pool at 100 connections and raises past it: a burst of a thousand
        # event streams opening at once (the front door's greenlets) waits for one instead.
        return redis.Redis(connection_pool=_blocking_pool(url, **options))
    target = parse_sentinel_url(url)
    timeout = options.pop("socket_timeout", 2.0)
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs={**target.auth(), "socket_timeout": timeout},
        socket_timeout=timeout,
        **target.auth(),
    )
    retry = Retry(FAILOVER_BACKOFF, FAILOVER_RETRIES)
    return sentinel.master_for(target.service, retry=retry, socket_timeout=timeout, **options)


def _blocking_pool(url: str, **options: Any) -> redis.BlockingConnectionPool:
    return redis.BlockingConnectionPool.from_url(url, max_connections=100, timeout=20, **options)


def limiter_options(url: str) -> dict[str, Any]:
    """What the limiter's own Redis client needs beyond ``url`` (``limits`` reads the
    sentinel URL itself): the same retries across a failover; a pool that waits past 100
    connections rather than failing, as ``open_redis``'s."""
    if not is_sentinel(url):
        return {"connection_pool": _blocking_pool(url)}
    return {"retry": Retry(FAILOVER_BACKOFF, FAILOVER_RETRIES), "socket_timeout": 2.0}


def celery_redis(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's URL and transport options for the Redis ``url`` names: ``sentinel://h:p;…``
    with the service as ``master_name``, or ``url`` itself."""
    if not is_sentinel(url):
        return url, {}
    target = parse_sentinel_url(url)
    auth = f":{target.password}@" if target.password else ""
    joined = ";".join(f"sentinel://{auth}{host}:{port}/0" for host, port in target.sentinels)
    options: dict[str, Any] = {"master_name": target.service}
    if target.password:
        options["sentinel_kwargs"] = {"password": target.password}
    return joined, options
