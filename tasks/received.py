"""How many task messages this worker process has received, by task name.

``celery inspect stats`` counts tasks as the worker starts them, which celery-batches
bypasses, so its ``total`` never moves for ``cutout.segment``. This counts at reception
instead (celery-batches sends ``task_received`` for every message it buffers):
``celery -A tasks.worker inspect cutout_received``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from celery import signals
from celery.worker.control import inspect_command

_received: Counter[str] = Counter()


@signals.task_received.connect
def _count(request: Any = None, **_: Any) -> None:
    if request is not None:
        _received[request.name] += 1


@inspect_command()
def cutout_received(state: Any, **_: Any) -> dict[str, int]:
    """Task messages received by this worker since it started, by task name."""
    return dict(_received)
