"""Real parts for the tests: a Redis server, a Celery worker, gunicorn, photos on disk."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from PIL import Image

from devtools.redis_server import free_port, start
from storage import ObjectStore, StorageSettings, open_store
from storage.redis_client import open_redis

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


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch on ``n`` threads inside: two intra-op threads spin against each other on a busy
    2-core machine (a student training step took 10 s instead of 0.5 s; DEVELOPERS.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def student_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cutout student trained for 40 steps at 64 px on a stand-in teacher's masks (the bright
    regions of five real photos): its masks have structure, unlike random weights' flat 0.46.
    A training checkpoint, which loads into every ``cutout-student*`` variant."""
    import numpy as np
    import torch

    from training.pack import build_pack
    from training.train import BEST, TrainSettings, train
    from workers.photos import CALIBRATION_PHOTOS, load_photo

    items = []
    for name in (*CALIBRATION_PHOTOS[:4], "astronaut"):
        rgb = load_photo(name)
        mask = (rgb.mean(2) > 110).astype(np.uint8) * 255
        items.append((name, rgb, mask, name == "astronaut", None))
    out = tmp_path_factory.mktemp("student")
    settings = TrainSettings(input_size=64, steps=40, batch_size=4, eval_every=40, workers=0)
    with torch_threads(1):
        train(build_pack(96, items, "stand-in"), out, settings, torch.device("cpu"), False, str)
    return out / BEST


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
        "CUTOUT_AUTH": "off",
        # No first-run background gate: a test's worker must not calibrate and gate engines
        # into the shared model dir (tests/test_engine_switch.py turns it on, with a stand-in).
        "CUTOUT_BACKGROUND_GATE": "off",
        # A worker's own metrics port: a free one, so parallel test runs never collide.
        "CUTOUT_METRICS_PORT": str(free_port()),
        **extra,
    }


def start_worker(
    env: dict[str, str], logs: Path, name: str = "gpu", queue: str = "gpu", *more_args: str
) -> subprocess.Popen[bytes]:
    # Threads as celeryconfig says (worker_concurrency: the gpu worker's batches in flight).
    args = [
        sys.executable, "-m", "celery", "-A", "tasks.worker", "worker",
        "--queues", queue, "--pool", "threads",
        "--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        *more_args,
    ]  # fmt: skip
    # Multiprocess metrics as in compose, in a directory of this worker's own.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(logs / f"{name}-metrics"), **env}
    return _spawn(args, env, logs / f"{name}.log")


def start_api(env: dict[str, str], logs: Path, port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "gunicorn", "--workers", "2", "--threads", "4",
            "--bind", f"127.0.0.1:{port}", "api:create_app()"]  # fmt: skip
    return _spawn(args, env, logs / "api.log")


def wait_for_gpu_worker(redis_url: str, timeout: float = 120) -> None:
    from jobs.heartbeats import Heartbeats

    beats = Heartbeats(open_redis(redis_url))  # a plain server or a Sentinel URL
    wait_until(lambda: beats.alive("gpu"), timeout, "a warmed gpu worker")


@contextmanager
def run_stack(
    redis_url: str, base: Path, *, housekeeping: bool = False, **extra_env: str
) -> Iterator[Stack]:
    """gunicorn serving the API and a Celery worker on the gpu queue (and, with
    ``housekeeping``, an io worker and beat), all real processes, with ``extra_env`` on top
    of the usual environment."""
    open_redis(redis_url).flushdb()
    files, logs = base / "files", base / "logs"
    logs.mkdir()
    defaults = {"CUTOUT_FLUSH_INTERVAL": "0.3", "CUTOUT_COST_PER_HOUR": "2.5"}
    env = stack_env(redis_url, files, **{**defaults, **extra_env})
    processes = [start_worker(env, logs)]
    if housekeeping:  # the io queue's worker, and beat sending it the periodic cleanup
        io_env = {**env, "CUTOUT_METRICS_PORT": str(free_port())}
        processes.append(start_worker(io_env, logs, "io", queue="io"))
        beat = [sys.executable, "-m", "celery", "-A", "tasks.worker", "beat",
                "--schedule", str(logs / "beat-schedule"), "--loglevel", "INFO"]  # fmt: skip
        processes.append(_spawn(beat, env, logs / "beat.log"))
    port = free_port()
    api = start_api(env, logs, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/healthz"), 30, "gunicorn")
        wait_for_gpu_worker(redis_url)
        yield Stack(url, redis_url, env, files, logs, processes[0])
    finally:
        with ThreadPoolExecutor() as pool:  # at once: each takes seconds to shut down
            list(pool.map(_stop, [api, *processes]))


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    redis_url: str,
    weights: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The service on local storage. A test module may set more environment for its
    processes in a ``STACK_ENV`` dict."""
    more_env = getattr(request.module, "STACK_ENV", {})
    with run_stack(redis_url, tmp_path_factory.mktemp("stack"), **more_env) as running:
        yield running


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@dataclass(frozen=True)
class S3Server:
    """A real S3-compatible server (nanio, which checks SigV4), addressed as Cloudflare R2 is:
    an endpoint URL and region "auto"."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "auto"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4"),
        )

    def new_bucket(self) -> str:
        name = f"cutout-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "CUTOUT_STORAGE": "s3",
            "CUTOUT_S3_BUCKET": bucket,
            "CUTOUT_S3_ENDPOINT_URL": self.endpoint_url,
            "CUTOUT_S3_REGION": self.region,
            "CUTOUT_S3_ACCESS_KEY_ID": self.access_key,
            "CUTOUT_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def settings(self, bucket: str, **overrides: Any) -> StorageSettings:
        return replace(StorageSettings.from_env(self.env(bucket)), **overrides)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    base = tmp_path_factory.mktemp("nanio")
    port = free_port()
    server = S3Server(f"http://127.0.0.1:{port}", "cutout-test", uuid.uuid4().hex)
    env = {
        **os.environ,
        "NANIO_ACCESS_KEY": server.access_key,
        "NANIO_SECRET_KEY": server.secret_key,
    }
    args = [sys.executable, "-m", "nanio", "serve", "--data-dir", str(base / "data"),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
            "--log-level", "warning"]  # fmt: skip
    proc = _spawn(args, env, base / "nanio.log")
    try:
        wait_until(lambda: _listening(port), 30, "nanio")
        yield server
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def io_worker(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker on the io queue (webhooks), with the stack's environment."""
    args = [
        sys.executable, "-m", "celery", "-A", "tasks.worker", "worker",
        "--queues", "io", "--pool", "threads", "--concurrency", "4",
        "--hostname", "io@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    proc = _spawn(args, stack.env, stack.logs / "io.log")
    try:
        wait_until(lambda: b"ready." in (stack.logs / "io.log").read_bytes(), 60, "the io worker")
        yield proc
    finally:
        _stop(proc)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each back end in turn, checked as at start-up: local disk, and S3 on nanio."""
    if request.param == "local":
        return open_store(StorageSettings(local_dir=tmp_path / "files"))
    server: S3Server = request.getfixturevalue("s3_server")
    return open_store(server.settings(server.new_bucket()))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class WebhookReceiver:
    """A real HTTP server on loopback. Each path answers its scripted replies in turn
    (``(status, headers)``), then 200; every request and connection is recorded."""

    server: ThreadingHTTPServer
    script: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    delay: float = 0.0  # seconds to wait before answering (to make the sender time out)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, *replies: tuple[int, dict[str, str]]) -> str:
        self.script[path] = list(replies)
        return self.url(path)

    def received(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                receiver.requests.append(Received(self.path, dict(self.headers), body, time.time()))
                replies = receiver.script.get(self.path) or []
                status, headers = replies.pop(0) if replies else (200, {})
            time.sleep(receiver.delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def verify_request(self, request, client_address) -> bool:  # type: ignore[no-untyped-def]
            with lock:
                receiver.connections += 1
            return True

    receiver = WebhookReceiver(Server(("127.0.0.1", 0), Handler))
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
