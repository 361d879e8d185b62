"""The API's processes as the benchmarks start them, on free ports under a work folder: the
environment (local storage, auth off, limits no round reaches), gunicorn as the Procfile runs
it and, where a benchmark wants it, the front door before it (``api/front.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def bench_env(redis_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """Anonymous local use (auth off) with rate limits no benchmark reaches."""
    return {
        **os.environ,
        "CUTOUT_REDIS_URL": redis_url,
        "CUTOUT_LOCAL_DIR": str(workdir / "files"),
        "CUTOUT_STORAGE": "local",
        "CUTOUT_AUTH": "off",
        "CUTOUT_RATE_LIMIT_SUBMIT": "100000 per minute",
        "CUTOUT_RATE_LIMIT_READ": "100000 per minute",
        **extra,
    }


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)


def start_gunicorn(
    env: dict[str, str], workdir: Path, port: int, proxy_protocol: str | None = None
) -> subprocess.Popen[bytes]:
    """gunicorn 2 × 4 threads, as the Procfile runs it; ``proxy_protocol`` (``v1``) when the
    front door stands before it."""
    proxy = ["--proxy-protocol", proxy_protocol] if proxy_protocol else []
    args = [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
            "--bind", f"127.0.0.1:{port}", *proxy, "api:create_app()"]  # fmt: skip
    return spawn(args, env, workdir / "api.log")


def start_front(
    env: dict[str, str], workdir: Path, port: int, upstream_port: int
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "api.front", "--bind", f"127.0.0.1:{port}",
            "--upstream", f"127.0.0.1:{upstream_port}"]  # fmt: skip
    return spawn(args, env, workdir / "front.log")


def stop(*procs: subprocess.Popen[bytes], grace: float = 30) -> None:
    """Terminate each process still running and wait for it, in order."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(grace)


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds:.0f}s for {what}")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False
