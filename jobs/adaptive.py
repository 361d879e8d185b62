"""Adaptive quality: under load, batches run at the reduced model input the quality gate allowed.

Each batch asks once how many jobs wait on the ``gpu`` queue (the broker's lists, as
``queue_depth`` counts them); deeper than the threshold, its jobs run at the reduced input.
Results computed that way are stored apart and never enter the result cache (see
``jobs/runner.py``), so a later upload of the same photo still gets full quality.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

log = logging.getLogger("cutout.adaptive")


class AdaptiveQuality:
    def __init__(
        self, queue_depth: Callable[[], int], threshold: int, reduced_input: int | None
    ) -> None:
        """``reduced_input``: the input the segmenter may run at (None: none was allowed);
        ``threshold``: jobs waiting beyond which it is used (0: never)."""
        self.queue_depth = queue_depth
        self.threshold = threshold
        self.reduced_input = reduced_input

    @property
    def enabled(self) -> bool:
        return self.reduced_input is not None and self.threshold > 0

    def model_input(self) -> int | None:
        """The reduced input while the queue is deeper than the threshold; None (the model's
        own) otherwise, or when the broker cannot be read."""
        if not self.enabled:
            return None
        try:
            depth = self.queue_depth()
        except redis.RedisError:
            log.warning("could not read the queue depth; running at full quality", exc_info=True)
            return None
        return self.reduced_input if depth > self.threshold else None
