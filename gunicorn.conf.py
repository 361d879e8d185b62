"""gunicorn settings, read from the working directory whatever the command line says.

JSON log lines (level from ``CUTOUT_LOG_LEVEL``) and Prometheus multiprocess mode: the master
empties (or creates) the metrics directory before it forks the workers, and drops the files of
a worker that exits. See observability/metrics_dir.py.
"""

import os
import shutil

from observability import logs, metrics_dir

logconfig_dict = logs.gunicorn_logconfig(logs.log_level())

_private_dirs = []


def on_starting(server):
    configured = bool(os.environ.get(metrics_dir.ENV))
    path = metrics_dir.prepare(os.environ)
    if path is not None and not configured:
        _private_dirs.append(path)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for path in _private_dirs:
        shutil.rmtree(path, ignore_errors=True)


def post_worker_init(worker):
    # What gunicorn refuses itself (414, 431, 400) answers in the API's JSON error shape.
    from api.gunicorn_errors import install

    install()
