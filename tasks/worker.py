"""Worker entry point: ``celery -A tasks.worker worker -Q gpu``.

Every worker proves its storage settings first and refuses to start, saying what is wrong,
when they cannot work. A worker consuming the ``gpu`` queue then builds and warms its model
before it takes a job, and announces itself through a heartbeat that ``/readyz`` reads, which
it withdraws as it shuts down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future
from typing import Any

from celery import signals

from jobs.heartbeats import Beating
from jobs.queue import GPU_QUEUE
from observability import logs, metrics_dir
from storage import StorageConfigError, StorageSettings, open_store
from tasks import (
    received,  # noqa: F401  (received: `inspect cutout_received`)
    task_events,  # noqa: F401  (each batched job's task events, for Flower)
)
from tasks.app import create_celery

app = create_celery()
log = logging.getLogger("cutout.worker")
_beating: list[Beating] = []  # this process's heartbeat, once it is ready


def _consumes_gpu(worker: Any) -> bool:
    return GPU_QUEUE in worker.app.amqp.queues.consume_from


@signals.import_modules.connect
def _empty_metrics_dir(sender: Any = None, **_: Any) -> None:
    # Before the task modules define the metrics. Only a configured directory: the celery
    # command has imported prometheus_client already, too late to make one (metrics_dir.py).
    if os.environ.get(metrics_dir.ENV):
        metrics_dir.prepare(os.environ)


@signals.setup_logging.connect
def _json_logs(loglevel: Any = None, **_: Any) -> None:
    # Connected, so Celery leaves the root logger to us: JSON lines like the API's.
    logs.configure(logs.log_level(default=loglevel or "INFO"))


@signals.worker_init.connect
def _limit_malloc_arenas(sender: Any = None, **_: Any) -> None:
    # Before any pool thread starts (workers/memory.py). 0 (the default): glibc's own, 8 per core:
    # a cap of 2 saved ~0.1 GiB idle and cost ~30% throughput here (bench/RESULTS.md, issue 21).
    from workers.memory import limit_malloc_arenas

    limit_malloc_arenas(int(os.environ.get("CUTOUT_MALLOC_ARENAS", 0)))


@signals.worker_init.connect
def _check_storage(sender: Any = None, **_: Any) -> None:
    try:
        open_store(StorageSettings.from_env())
    except StorageConfigError as exc:
        log.critical("cutout worker refusing to start: %s", exc)
        # Celery logs and swallows exceptions from signal handlers, but not SystemExit.
        raise SystemExit(f"cutout worker refusing to start: {exc}") from None


@signals.worker_init.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    from observability.exposition import ExporterSettings, serve_worker_metrics

    serve_worker_metrics(ExporterSettings.from_env())


_warming: list[Future[None]] = []  # the model's build and warm-up, on a thread of its own


@signals.worker_init.connect
def _warm_model(sender: Any = None, **_: Any) -> None:
    # On a thread while Celery goes on booting (its pool, the broker connection, mingle): the
    # cold start overlaps the two (bench/RESULTS.md, issue 21). The worker says it is ready
    # (worker_ready, below) only once the model is warm.
    if sender is None or not _consumes_gpu(sender):
        return
    future: Future[None] = Future()

    def build() -> None:
        try:
            _build_and_warm()
        except BaseException as exc:  # handed to whoever waits: worker_ready, below
            future.set_exception(exc)
        else:
            future.set_result(None)

    threading.Thread(target=build, name="cutout-warm-model", daemon=True).start()
    _warming.append(future)


def _build_and_warm() -> None:
    from observability import metrics
    from tasks.segment import segment

    segmenter = segment.pipeline.segmenter  # loads the model (timed as "load")
    _ = segment.runner  # built now, not by the first batches (they run on several threads)
    segmenter.warm_up()  # fills segmenter.cold_start_seconds
    for phase, seconds in segmenter.cold_start_seconds.items():
        if phase != "total":  # "total" is process start → ready, recorded by _record_ready
            metrics.record_cold_start(phase, seconds)


def _wait_for_model() -> None:
    while _warming:
        try:
            _warming[0].result()
        except Exception as exc:
            # Celery logs and swallows a signal handler's Exception; a worker without its
            # model must not start (nor announce itself ready), so leave with the reason.
            log.critical("the gpu worker cannot start: %s", exc, exc_info=exc)
            raise SystemExit(1) from exc
        _warming.pop()


@signals.worker_ready.connect
def _log_cold_start(sender: Any = None, **_: Any) -> None:
    worker = sender.controller if sender is not None else None
    if worker is None or not _consumes_gpu(worker):
        return
    from tasks.segment import segment

    _wait_for_model()  # before the consumer's loop runs: no batch starts before it
    segmenter = segment.pipeline.segmenter  # its cold_start_seconds stay for exporters
    cold = {k: round(v, 3) for k, v in segmenter.cold_start_seconds.items()}
    log.info(
        "engine %s warm",
        segmenter.engine.name,
        extra={"stage": "cold_start", "engine": segmenter.engine.name, "cold_start_seconds": cold},
    )


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    from tasks.segment import segment

    worker = sender.controller if sender is not None else None
    if worker is None or not _consumes_gpu(worker):
        return
    name = f"{sender.hostname or socket.gethostname()}"
    _beating.append(segment.services.heartbeats.keep_alive(GPU_QUEUE, name))
    _record_ready()


def _record_ready() -> None:
    import psutil

    from observability import metrics

    total = time.time() - psutil.Process().create_time()
    metrics.record_cold_start("total", total)
    log.info("ready for jobs %.2fs after the process started", total, extra={"stage": "ready"})


@signals.worker_ready.connect
def _start_engine_switch(sender: Any = None, **_: Any) -> None:
    # Connected after the heartbeat: the worker is ready (and says so) before the gate starts,
    # so the first jobs never wait for it.
    worker = sender.controller if sender is not None else None
    if worker is None or not _consumes_gpu(worker):
        return
    from tasks.segment import segment

    switch = segment.engine_switch
    if switch is not None:
        switch.start()


@signals.worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    # Withdrawn at once, so /readyz stops counting this worker now rather than when its last
    # beat goes stale.
    while _beating:
        _beating.pop().stop()


@signals.worker_shutdown.connect
def _stop_engine_switch(sender: Any = None, **_: Any) -> None:
    from tasks.segment import segment

    segment.stop_engine_switch()  # a background gate still running ends with its worker
