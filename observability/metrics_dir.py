"""The directory prometheus_client's multiprocess mode shares between a process and its children.

gunicorn's workers and Celery's pool children each write their metrics to files there, and
whichever process answers a scrape sums them. The directory must be emptied at every start
(or counters carry over from the last run) and never shared by two process groups.

prometheus_client picks multiprocess mode when it is first imported. gunicorn's master has not
imported it when ``prepare`` runs, so it may make a private directory when none is configured;
the ``celery`` command imports it early (Flower's plugin does), so a worker whose pool forks
(the ``io`` worker) needs ``PROMETHEUS_MULTIPROC_DIR`` set before it starts. A threads-pool
worker (the ``gpu`` one) is one process and works either way.

Stdlib only: importing this module must not import prometheus_client.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("cutout.metrics")


def prepare(env: MutableMapping[str, str]) -> Path | None:
    """Empty the configured directory, or, when none is configured and it is not too late,
    create a private one and name it in ``env``. Returns the directory, or None (this
    process's metrics then stay in this process)."""
    configured = env.get(ENV)
    if not configured:
        if "prometheus_client" in sys.modules:
            return None
        path = Path(tempfile.mkdtemp(prefix="cutout-metrics-"))
        env[ENV] = str(path)
        return path
    path = Path(configured)
    if any(path.glob(f"*_{os.getpid()}.db")):
        # This process already writes there: emptying it now would lose its own metrics.
        log.warning("%s was prepared after this process wrote metrics to it", ENV)
        return path
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():  # the directory itself may be a mount point (a tmpfs)
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    return path
