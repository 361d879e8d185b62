"""Real parts for the tests: a Redis server, a Celery worker, gunicorn, photos on disk."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from PIL import Image

from storage.redis_server import free_port, start

ROOT = Path(__file__).resolve().parent.parent
PHOTO_NAMES = ("astronaut", "chelsea", "coffee")


def model_dir() -> Path:
    return Path(os.environ.get("CUTOUT_MODEL_DIR", Path.home() / ".cache" / "cutout")).expanduser()


@pytest.fixture(scope="session")
def weights() -> Path:
    from workers.models.fetch import SAFETENSORS_NAME

    path = model_dir() / SAFETENSORS_NAME
    if not path.is_file():
        pytest.fail(f"model weights missing at {path}: run `make weights` (make test does)")
    return path


@pytest.fixture(scope="session")
def inspyrenet_swinb_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights for InSPyReNet SwinB at base size 384 in transparent-background's
    ``ckpt_fast.pth`` format, written by that package's own model (see tests/peers.py)."""
    import torch

    from tests.peers import CALIBRATION_PHOTOS, peer_swinb, randomize_

    peer = peer_swinb(384)
    randomize_(peer, peer.forward_inspyre, (384,), CALIBRATION_PHOTOS[:3])
    path = tmp_path_factory.mktemp("inspyrenet") / "ckpt_fast.pth"
    torch.save(peer.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start(port, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def photo_jpeg(name: str, quality: int = 92) -> bytes:
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return {name: photo_jpeg(name) for name in PHOTO_NAMES}


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@dataclass
class Stack:
    api_url: str
    redis_url: str
    env: dict[str, str]
    files_dir: Path
    logs: Path
    worker: subprocess.Popen[bytes]

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def stack_env(redis_url: str, files_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CUTOUT_REDIS_URL": redis_url,
        "CUTOUT_LOCAL_DIR": str(files_dir),
        "CUTOUT_MODEL_DIR": str(model_dir()),
        "CUTOUT_KEY_PREFIX": "cutout",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def start_worker(env: dict[str, str], logs: Path, name: str = "gpu") -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "celery", "-A", "tasks.worker", "worker",
        "--queues", "gpu", "--pool", "threads", "--concurrency", "1",
        "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    return _spawn(args, env, logs / f"{name}.log")


def wait_for_gpu_worker(redis_url: str, timeout: float = 120) -> None:
    from storage.heartbeats import Heartbeats

    beats = Heartbeats(redis.Redis.from_url(redis_url))
    wait_until(lambda: beats.alive("gpu"), timeout, "a warmed gpu worker")


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    redis_url: str,
    weights: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """gunicorn serving the API and a Celery worker on the gpu queue, both real processes.
    A test module may set more environment for them in a ``STACK_ENV`` dict."""
    redis.Redis.from_url(redis_url).flushdb()
    base = tmp_path_factory.mktemp("stack")
    files, logs = base / "files", base / "logs"
    logs.mkdir()
    more_env = getattr(request.module, "STACK_ENV", {})
    env = stack_env(redis_url, files, CUTOUT_FLUSH_INTERVAL="0.3", **more_env)
    worker = start_worker(env, logs)
    port = free_port()
    api = _spawn(
        [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
         "--bind", f"127.0.0.1:{port}", "api:create_app()"],
        env,
        logs / "api.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/healthz"), 30, "gunicorn")
        wait_for_gpu_worker(redis_url)
        yield Stack(url, redis_url, env, files, logs, worker)
    finally:
        _stop(api)
        _stop(worker)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False
