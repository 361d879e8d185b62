"""Storing outputs through a storage outage: transient errors (a full disk, S3 down or
throttling) are waited out for CUTOUT_STORAGE_RETRY_FOR seconds, with the outputs kept in
memory (never recomputed); past the window the job fails with storage_unavailable; permanent
errors fail it at once (storage_error). On a real tmpfs, filled and freed."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import torch
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError

from devtools.redis_server import free_port
from jobs.dispatch import Dispatcher
from jobs.record import JobRecord
from jobs.runner import JobRunner
from jobs.store import JobStore
from storage import StorageSettings, open_store
from storage.result_cache import ResultCache
from storage.transient import RetryWindow, StorageUnavailable, is_transient
from tests.conftest import S3Server, _listening, _spawn, _stop, wait_until
from tests.test_job_runner import queued
from tests.test_pipeline_stages import CONFIG, StandInEngine
from tests.test_result_cache import Queue
from workers.build import BatchProcessor
from workers.pipeline import Pipeline
from workers.predictor import Segmenter


def _client_error(status: int, code: str) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


def _wrapped(inner: Exception) -> S3UploadFailedError:
    try:
        raise inner
    except ClientError:
        try:  # as boto3's multipart upload raises it
            raise S3UploadFailedError("Failed to upload") from None
        except S3UploadFailedError as outer:
            return outer
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (ConnectionResetError(errno.ECONNRESET, "reset"), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (_client_error(503, "SlowDown"), True),
        (_client_error(500, "InternalError"), True),
        (_client_error(429, "TooManyRequests"), True),
        (_wrapped(_client_error(503, "ServiceUnavailable")), True),
        (OSError(errno.EROFS, "Read-only file system"), False),
        (PermissionError(errno.EACCES, "Permission denied"), False),
        (_client_error(403, "AccessDenied"), False),
        (_client_error(404, "NoSuchBucket"), False),
        (_wrapped(_client_error(403, "AccessDenied")), False),
        (ValueError("a bad key"), False),
    ],
)
def test_transient_storage_errors_are_told_from_permanent_ones(
    exc: Exception, transient: bool
) -> None:
    assert is_transient(exc) is transient


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_window_backs_off_is_shared_by_a_batch_and_reopens_after_a_success() -> None:
    clock = FakeClock()
    window = RetryWindow(10, sleep=clock.sleep, clock=clock)
    failures = iter([OSError(errno.ENOSPC, "full")] * 3)

    def save() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "stored"

    assert window.call(save, "storing a") == "stored"
    assert clock.now == pytest.approx(0.5 + 1 + 2)  # doubling delays
    # A new outage: the whole window, then StorageUnavailable; the next call in the same
    # run of failures does not wait another window.
    clock.now, start = 100.0, 100.0

    def full() -> str:
        raise OSError(errno.ENOSPC, "full")

    with pytest.raises(StorageUnavailable, match="CUTOUT_STORAGE_RETRY_FOR=10"):
        window.call(full, "storing b")
    assert clock.now == pytest.approx(start + 10)
    with pytest.raises(StorageUnavailable):
        window.call(full, "storing c")
    assert clock.now == pytest.approx(start + 10)
    with pytest.raises(PermissionError):  # permanent: never retried

        def refused() -> str:
            raise PermissionError(errno.EACCES, "denied")

        RetryWindow(10, sleep=clock.sleep, clock=clock).call(refused, "storing d")


def test_the_retry_window_is_a_validated_setting() -> None:
    assert StorageSettings.from_env({}).storage_retry_seconds == 60
    settings = StorageSettings.from_env({"CUTOUT_STORAGE_RETRY_FOR": "2.5"})
    assert settings.storage_retry_seconds == 2.5
    assert StorageSettings.from_env({"CUTOUT_STORAGE_RETRY_FOR": "-1"}).problems()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own (root only: ``mount``)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    try:
        with filler.open("wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    return filler


class Harness:
    def __init__(self, dispatcher: Dispatcher, engine: StandInEngine, runner: JobRunner) -> None:
        self.dispatcher, self.engine, self.runner = dispatcher, engine, runner


@pytest.fixture
def harness(
    redis_client: redis.Redis, disk: Path, request: pytest.FixtureRequest
) -> Iterator[Harness]:
    jobs = JobStore(redis_client, ttl_seconds=60)
    store = open_store(StorageSettings(local_dir=disk / "files"))
    dispatcher = Dispatcher(jobs, ResultCache(redis_client), store, Queue())
    engine = StandInEngine()
    with ThreadPoolExecutor(2) as pool:
        processor = BatchProcessor(Pipeline(Segmenter(engine, CONFIG), pool))
        runner = JobRunner(dispatcher, processor, storage_retry_for=request.param)
        yield Harness(dispatcher, engine, runner)


def _run(h: Harness, job: JobRecord) -> tuple[str, float, str]:
    began = time.monotonic()
    statuses = h.runner.run([job.id])
    record = h.dispatcher.jobs.get(job.id)
    assert record is not None
    code = record.error.code if record.error else ""
    return statuses[job.id], time.monotonic() - began, code


@pytest.mark.parametrize("harness", [30.0], indirect=True)
def test_a_full_disk_freed_within_the_window_costs_a_wait_not_the_job(
    harness: Harness, disk: Path
) -> None:
    job = queued(harness.dispatcher, "outage-freed", ["color", "popart"])
    filler = _fill(disk)
    threading.Timer(1.5, filler.unlink).start()  # the operator clears the disk
    status, took, _ = _run(harness, job)
    assert status == "succeeded"
    assert took >= 1.5
    assert len(harness.engine.calls) == 1, "the outputs were stored, not computed again"


@pytest.mark.parametrize("harness", [1.0], indirect=True)
def test_a_disk_still_full_past_the_window_fails_the_job_storage_unavailable(
    harness: Harness, disk: Path
) -> None:
    job = queued(harness.dispatcher, "outage-lasting", ["color", "popart"])
    _fill(disk)
    status, took, code = _run(harness, job)
    assert (status, code) == ("failed", "storage_unavailable")
    assert 1.0 <= took < 10
    assert len(harness.engine.calls) == 1


@pytest.mark.parametrize("harness", [30.0], indirect=True)
def test_a_read_only_disk_fails_the_job_at_once(harness: Harness, disk: Path) -> None:
    job = queued(harness.dispatcher, "outage-readonly", ["color"])  # staged while writable
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    status, took, code = _run(harness, job)
    assert (status, code) == ("failed", "storage_error")
    assert took < 10, "a permanent error is not waited out"


class S3Blip:
    """A real S3 server (nanio) of this test's own, which it can stop and start again on the
    same port and data directory, so buckets and objects survive the outage."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.server = S3Server(f"http://127.0.0.1:{self.port}", "cutout-test", uuid.uuid4().hex)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "NANIO_ACCESS_KEY": self.server.access_key,
               "NANIO_SECRET_KEY": self.server.secret_key}  # fmt: skip
        args = [sys.executable, "-m", "nanio", "serve", "--data-dir", str(self.base / "data"),
                "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                "--log-level", "warning"]  # fmt: skip
        self.proc = _spawn(args, env, self.base / "nanio.log")
        wait_until(lambda: _listening(self.port), 30, "nanio")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGKILL)


class BlippingEngine(StandInEngine):
    """Stops the S3 server while the model runs (after the input was read, before the outputs
    are stored) and starts it again ``down_for`` seconds later."""

    def __init__(self, blip: S3Blip, down_for: float) -> None:
        super().__init__()
        self.blip, self.down_for = blip, down_for

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.calls:
            self.blip.stop()
            threading.Timer(self.down_for, self.blip.start).start()
        return super().predict(batch)


def test_an_s3_outage_within_the_window_costs_a_wait_not_the_job(
    redis_client: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blip = S3Blip(tmp_path)
    blip.start()
    try:
        bucket = blip.server.new_bucket()
        # One try per request, so the outage reaches the window at once (botocore's own
        # retries would otherwise wait it out first).
        settings = blip.server.settings(bucket, s3_max_attempts=1, s3_timeout_seconds=2.0)
        jobs = JobStore(redis_client, ttl_seconds=60)
        dispatcher = Dispatcher(jobs, ResultCache(redis_client), open_store(settings), Queue())
        engine = BlippingEngine(blip, down_for=1.5)
        with ThreadPoolExecutor(2) as pool:
            processor = BatchProcessor(Pipeline(Segmenter(engine, CONFIG), pool))
            runner = JobRunner(dispatcher, processor, storage_retry_for=30)
            job = queued(dispatcher, "s3-outage", ["color"])
            status, took, _ = _run(Harness(dispatcher, engine, runner), job)
        assert status == "succeeded"
        assert took >= 1.5 and len(engine.calls) == 1
        assert "trying again" in caplog.text  # the store failed while the server was down
        record = jobs.get(job.id)
        assert record is not None
        stored = blip.server.client().list_objects_v2(Bucket=bucket, Prefix="results/")
        assert {o["Key"] for o in stored["Contents"]} >= {o.key for o in record.outputs.values()}
    finally:
        blip.stop()
