"""Metrics, logs and their helpers, in this process: the API with its own config and real Redis,
the broker's queues as kombu writes them, NVML readings (faked: no GPU here), the cost estimate."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
import types
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from celery import Celery
from flask.testing import FlaskClient
from PIL import Image
from prometheus_client import REGISTRY
from prometheus_client.core import CollectorRegistry
from redis.backoff import NoBackoff
from redis.retry import Retry

from api import create_app
from jobs.queue import BrokerQueues, WaitingJobs, configured_queues
from jobs.store import JobStore
from observability import logs, metrics_dir
from observability.cost import CostMeter
from observability.exposition import GpuCollector
from observability.queue_stats import QueueCollector
from storage.settings import StorageSettings
from tests.prom import parse, value
from tests.records import job_record


@pytest.fixture
def client(redis_client: redis.Redis, redis_url: str, tmp_path: Path) -> Iterator[FlaskClient]:
    app = create_app(
        {
            "STORAGE": StorageSettings(local_dir=tmp_path / "files", redis_url=redis_url),
            "ENQUEUE": lambda job_id: None,
        }
    )
    with app.test_client() as c:
        yield c


def _scrape(client: FlaskClient):  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(out, "JPEG")
    return out.getvalue()


def test_api_metrics_count_requests_jobs_and_error_codes(client: FlaskClient) -> None:
    before = _scrape(client)
    created = client.post(
        "/api/v2/jobs",
        data={"image": (io.BytesIO(_jpeg()), "a.jpg")},
        content_type="multipart/form-data",
    )
    assert created.status_code == 202
    assert client.get("/api/v2/jobs/nope").status_code == 404
    after = _scrape(client)

    def moved(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    requests = "cutout_request_duration_seconds_count"
    assert moved(requests, endpoint="jobs.create_job", status="202") == 1
    assert moved(requests, endpoint="jobs.get_job", status="404") == 1
    assert moved("cutout_jobs_total", status="queued") == 1
    assert moved("cutout_errors_total", code="job_not_found") == 1
    assert value(after, "cutout_queue_depth", queue="gpu") == 0  # ENQUEUE sent nothing
    for name in (
        "cutout_cache_hits_total",
        "cutout_webhook_deliveries_total",
        "cutout_batch_size_count",
    ):
        assert any(n == name for n, _ in after), f"{name} is defined"


def test_queue_depth_and_age_read_the_lists_kombu_writes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    jobs = JobStore(redis_client)
    app = Celery("metrics-test", broker=redis_url)
    queue = "metrics-test"
    created = "2026-01-01T00:00:00.000Z"
    for i, priority in enumerate([0, 0, 5, 9]):  # several priority lists
        jobs.create(replace(job_record(f"job{i}"), created_at=created))
        app.send_task("cutout.segment", args=[f"job{i}"], task_id=f"job{i}", queue=queue,
                      priority=priority)  # fmt: skip
    app.send_task("other.task", queue="metrics-test-other")  # not a job: no age
    queues = BrokerQueues(redis_client)
    with app.connection_for_read() as conn:
        expected = conn.default_channel.queue_declare(queue, passive=True).message_count
    assert queues.depth(queue) == expected == 4

    registry = CollectorRegistry()
    registry.register(
        QueueCollector(WaitingJobs(queues, jobs), [queue, "metrics-test-other", "idle"])
    )
    samples = {
        (s.name, s.labels.get("queue")): s.value for m in registry.collect() for s in m.samples
    }
    assert samples[("cutout_queue_depth", queue)] == 4
    assert samples[("cutout_queue_depth", "metrics-test-other")] == 1
    assert samples[("cutout_queue_depth", "idle")] == 0
    age = time.time() - 1767225600  # seconds since `created`
    assert samples[("cutout_queue_oldest_age_seconds", queue)] == pytest.approx(age, abs=5)
    assert samples[("cutout_queue_oldest_age_seconds", "idle")] == 0
    assert ("cutout_queue_oldest_age_seconds", "metrics-test-other") not in samples
    app.close()


def test_configured_queues_come_from_celeryconfig() -> None:
    from tasks.app import create_celery

    assert configured_queues(create_celery().conf) == ["gpu", "io"]


def test_a_broker_that_does_not_answer_gives_no_queue_series() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    collector = QueueCollector(WaitingJobs(BrokerQueues(dead), JobStore(dead)), ["gpu"])
    assert list(collector.collect()) == []


GIB = 2**30


def _fake_nvml(monkeypatch: pytest.MonkeyPatch, *, driver: bool) -> None:
    """A stand-in for pynvml: there is no NVIDIA driver on these machines."""

    class NVMLError(Exception):
        pass

    def init() -> None:
        if not driver:
            raise NVMLError("Driver Not Loaded")

    fake = types.SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=(h + 1) * GIB, total=80 * GIB),
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40 + h),
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}",
        nvmlDeviceGetName=lambda h: b"NVIDIA H100",
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "pynvml", fake)


def _gpu_samples() -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["gpu"]): s.value for m in GpuCollector().collect() for s in m.samples}


def test_gpu_series_come_from_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvml(monkeypatch, driver=True)
    samples = _gpu_samples()
    assert samples[("cutout_gpu_memory_bytes", "1")] == 2 * GIB
    assert samples[("cutout_gpu_memory_total_bytes", "0")] == 80 * GIB
    assert samples[("cutout_gpu_utilization_ratio", "1")] == pytest.approx(0.41)


def test_gpu_series_are_absent_without_a_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_nvml(monkeypatch, driver=False)
    assert _gpu_samples() == {}
    monkeypatch.setitem(sys.modules, "pynvml", None)  # the package missing altogether
    assert _gpu_samples() == {}


def test_cost_per_1k_images_from_price_and_throughput() -> None:
    now = [100.0]
    meter = CostMeter(3.6, clock=lambda: now[0])  # $3.60 an hour: $0.001 a second
    assert meter.per_1k_busy() is None and meter.per_1k_wall() is None
    now[0] += 50
    meter.add(images=10, seconds=2.0)
    assert meter.per_1k_busy() == pytest.approx(0.001 * 2.0 / 10 * 1000)  # $0.20
    assert meter.per_1k_wall() == pytest.approx(0.001 * 50 / 10 * 1000)  # $5.00, idle paid too
    gauge = REGISTRY.get_sample_value("cutout_cost_per_1k_images", {"basis": "busy"})
    assert gauge == pytest.approx(0.2)
    assert CostMeter.from_env({}) is None
    assert CostMeter.from_env({"CUTOUT_COST_PER_HOUR": "2.5"}).dollars_per_hour == 2.5  # type: ignore[union-attr]
    for bad in ("-1", "nan", "two dollars"):
        with pytest.raises(ValueError):
            CostMeter.from_env({"CUTOUT_COST_PER_HOUR": bad})


def test_log_lines_are_json_with_the_extra_fields() -> None:
    record = logging.LogRecord(
        "cutout.jobs", logging.INFO, __file__, 1, "job %s done", ("j1",), None
    )
    record.job_id, record.timings = "j1", {"inference_ms": 12.5}
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "job j1 done" and line["level"] == "INFO"
    assert line["job_id"] == "j1" and line["timings"] == {"inference_ms": 12.5}
    assert logs.log_level({"CUTOUT_LOG_LEVEL": "debug"}) == "DEBUG"
    assert logs.log_level({}, default=logging.WARNING) == "WARNING"
    with pytest.raises(ValueError):
        logs.log_level({"CUTOUT_LOG_LEVEL": "loud"})


def test_the_metrics_dir_is_emptied_unless_this_process_writes_there(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    path.mkdir()
    (path / "counter_1.db").write_bytes(b"old run")
    assert metrics_dir.prepare({metrics_dir.ENV: str(path)}) == path
    assert list(path.iterdir()) == []
    mine = path / f"counter_{os.getpid()}.db"
    mine.write_bytes(b"live")
    metrics_dir.prepare({metrics_dir.ENV: str(path)})
    assert mine.exists()
    # prometheus_client is imported here already: too late for a private directory.
    assert metrics_dir.prepare({}) is None
