"""A Redis server of a test's own, with AOF, that the test stops and starts again."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devtools.redis_server import free_port, start


@dataclass
class OwnRedis:
    """A Redis server on a free port that a test may stop and start again (same data dir)."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start(self.port, self.workdir, appendonly=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:  # SHUTDOWN writes the AOF out, as `redis-cli shutdown` does; no retries,
                # which would wait seconds for the server that just went away
                client = redis.Redis(port=self.port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
                client.shutdown()
            except redis.ConnectionError:
                pass
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_redis(workdir: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)
