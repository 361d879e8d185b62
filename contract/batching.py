"""How many jobs a gpu worker takes at once: the queue flushes a batch at this size, and the
engines prepare their batch shapes up to it. ``CUTOUT_FLUSH_EVERY`` is read here only."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_FLUSH_EVERY = 8


def flush_every(env: Mapping[str, str]) -> int:
    return int(env.get("CUTOUT_FLUSH_EVERY", DEFAULT_FLUSH_EVERY))
