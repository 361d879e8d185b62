"""Serving the metrics: a registry per exposing process, the GPU collector, the worker's port.

In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, see ``metrics_dir.py``) the registry sums
every process's files; otherwise it is this process's own metrics. Collectors given here are
read at each scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from observability import metrics
from observability.gpu_stats import read_gpus

log = logging.getLogger("cutout.metrics")


class _ProcessMetrics:
    """The default registry's metrics, passed through (so a registry can add collectors to
    them without registering anything globally)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def build_registry(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    for collector in collectors:
        registry.register(collector)
    return registry


class GpuCollector:
    """``cutout_gpu_memory_bytes``, ``cutout_gpu_memory_total_bytes`` and
    ``cutout_gpu_utilization_ratio`` per GPU, read from NVML at each scrape; none at all where
    NVML is absent."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        readings = read_gpus()
        if not readings:
            return
        labels = ["gpu", "uuid", "name"]
        used = GaugeMetricFamily("cutout_gpu_memory_bytes", "GPU memory in use", labels=labels)
        total = GaugeMetricFamily(
            "cutout_gpu_memory_total_bytes", "GPU memory in all", labels=labels
        )
        busy = GaugeMetricFamily(
            "cutout_gpu_utilization_ratio", "Share of time a kernel was running", labels=labels
        )
        for r in readings:
            values = [str(r.index), r.uuid, r.name]
            used.add_metric(values, r.memory_used_bytes)
            total.add_metric(values, r.memory_total_bytes)
            busy.add_metric(values, r.utilization_ratio)
        yield from (used, total, busy)


@dataclass(frozen=True)
class ExporterSettings:
    address: str = "127.0.0.1"
    port: int = 9101  # 0: no exporter

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ExporterSettings:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            address=env.get("CUTOUT_METRICS_ADDRESS", default.address),
            port=int(env.get("CUTOUT_METRICS_PORT", default.port)),
        )


def serve_worker_metrics(settings: ExporterSettings) -> WSGIServer | None:
    """Expose this worker's metrics (and the GPUs') on its own port, from a daemon thread.

    A port already taken is logged, not raised: a worker without metrics beats no worker.
    """
    if not settings.port:
        return None
    metrics.initialise_series()
    try:
        server, _ = start_http_server(
            settings.port, settings.address, registry=build_registry(GpuCollector())
        )
    except OSError:
        log.error("metrics: cannot listen on %s:%d", settings.address, settings.port, exc_info=True)
        return None
    log.info("metrics on http://%s:%d/metrics", settings.address, settings.port)
    return server
