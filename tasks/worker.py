"""Worker entry point: ``celery -A tasks.worker worker -Q gpu``.

Every worker proves its storage settings first and refuses to start, saying what is wrong,
when they cannot work. A worker consuming the ``gpu`` queue then builds and warms its model
before it takes a job, and announces itself through a heartbeat that ``/readyz`` reads.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from celery import signals

from storage import StorageConfigError, StorageSettings, open_store
from tasks import received  # noqa: F401  (registers the `cutout_received` inspect command)
from tasks.app import create_celery

app = create_celery()
log = logging.getLogger("cutout.worker")
_stop = threading.Event()


def _consumes_gpu(worker: Any) -> bool:
    return "gpu" in worker.app.amqp.queues.consume_from


@signals.worker_init.connect
def _check_storage(sender: Any = None, **_: Any) -> None:
    try:
        open_store(StorageSettings.from_env())
    except StorageConfigError as exc:
        log.critical("cutout worker refusing to start: %s", exc)
        # Celery logs and swallows exceptions from signal handlers, but not SystemExit.
        raise SystemExit(f"cutout worker refusing to start: {exc}") from None


@signals.worker_init.connect
def _warm_model(sender: Any = None, **_: Any) -> None:
    if sender is None or not _consumes_gpu(sender):
        return
    from tasks.segment import segment

    segment.runner.pipeline.segmenter.warm_up()


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
