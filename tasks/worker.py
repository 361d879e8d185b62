"""Worker entry point: ``celery -A tasks.worker worker -Q gpu``.

A worker consuming the ``gpu`` queue builds and warms its model before it takes a job, then
announces itself through a heartbeat that ``/readyz`` reads.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any

from celery import signals

from tasks.app import create_celery

app = create_celery()
log = logging.getLogger("cutout.worker")
_stop = threading.Event()


def _consumes_gpu(worker: Any) -> bool:
    return "gpu" in worker.app.amqp.queues.consume_from


@signals.worker_init.connect
def _warm_model(sender: Any = None, **_: Any) -> None:
    if sender is None or not _consumes_gpu(sender):
        return
    from tasks.segment import segment
    from workers.engines import EngineUnavailable

    try:
        segmenter = segment.runner.pipeline.segmenter
    except (EngineUnavailable, FileNotFoundError, KeyError, ValueError) as exc:
        # Celery logs and swallows a signal handler's Exception; a worker without its model
        # must not start (nor announce itself ready), so leave with the reason.
        log.critical("the gpu worker cannot start: %s", exc)
        raise SystemExit(1) from exc
    segmenter.warm_up()  # fills segmenter.cold_start_seconds, logged once logging is set up


@signals.worker_ready.connect
def _log_cold_start(sender: Any = None, **_: Any) -> None:
    worker = sender.controller if sender is not None else None
    if worker is None or not _consumes_gpu(worker):
        return
    from tasks.segment import segment

    segmenter = segment.runner.pipeline.segmenter  # its cold_start_seconds stay for exporters
    cold = {k: round(v, 3) for k, v in segmenter.cold_start_seconds.items()}
    log.info("engine %s warm; cold_start_seconds %s", segmenter.engine.name, json.dumps(cold))


@signals.worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    from tasks.segment import segment

    worker = sender.controller if sender is not None else None
    if worker is None or not _consumes_gpu(worker):
        return
    name = f"{sender.hostname or socket.gethostname()}"
    heartbeats = segment.heartbeats

    def beat() -> None:
        while not _stop.is_set():
            try:
                heartbeats.beat("gpu", name)
            except Exception:
                log.warning("heartbeat to Redis failed", exc_info=True)
            _stop.wait(5.0)

    threading.Thread(target=beat, name="cutout-heartbeat", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    _stop.set()
