"""What 1000 images cost on this worker, from its configured $/hour and its measured throughput.

``CUTOUT_COST_PER_HOUR`` is the price of what this worker occupies (a GPU's hourly price
divided by the workers sharing it). Unset, nothing is estimated.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

from observability import metrics


class CostMeter:
    def __init__(
        self, dollars_per_hour: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not dollars_per_hour >= 0:
            raise ValueError(f"a price per hour must be 0 or more, not {dollars_per_hour}")
        self.dollars_per_hour = dollars_per_hour
        self.clock = clock
        self.started = clock()
        self.busy_seconds = 0.0
        self.images = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CostMeter | None:
        raw = (os.environ if env is None else env).get("CUTOUT_COST_PER_HOUR", "").strip()
        if not raw:
            return None
        try:
            return cls(float(raw))
        except ValueError:
            raise ValueError(
                f"CUTOUT_COST_PER_HOUR must be dollars per hour, not {raw!r}"
            ) from None

    def _per_1k(self, seconds: float) -> float:
        return self.dollars_per_hour / 3600 * seconds / self.images * 1000

    def per_1k_busy(self) -> float | None:
        """The cost at full load: only the time spent running batches is paid for."""
        return self._per_1k(self.busy_seconds) if self.images else None

    def per_1k_wall(self) -> float | None:
        """The cost so far: every second since the worker started is paid for, idle or not."""
        return self._per_1k(self.clock() - self.started) if self.images else None

    def add(self, images: int, seconds: float) -> None:
        self.images += images
        self.busy_seconds += seconds
        for basis, value in (("busy", self.per_1k_busy()), ("wall", self.per_1k_wall())):
            if value is not None:
                metrics.COST.labels(basis=basis).set(value)


class BusyClock:
    """Seconds during which at least one batch ran: batches in flight at once count once.

    ``start`` and ``stop`` (one pair per batch) each return the busy seconds accrued since
    the previous call; their sum over time is the busy time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._since = clock()

    def _accrue(self, change: int) -> float:
        with self._lock:
            now = self.clock()
            gained = now - self._since if self._running else 0.0
            self._since = now
            self._running += change
            return gained

    def start(self) -> float:
        return self._accrue(+1)

    def stop(self) -> float:
        return self._accrue(-1)
