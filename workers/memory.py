"""Giving freed memory back to the system (glibc only; elsewhere these do nothing).

A gpu worker's batches run on several threads, and glibc gives each thread that contends for
the heap an arena of its own (up to 8 per core), each keeping what it freed: decoded photos and
effect buffers of a past batch stayed resident in an idle worker. ``release_free_memory``
returns the free pages of every arena after a batch (``malloc_trim``, a few milliseconds);
``limit_malloc_arenas`` caps the arenas (as ``MALLOC_ARENA_MAX`` would, set before the threads
start), which the worker does only when asked (it cost throughput). Measured in
bench/RESULTS.md (issue 21).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_ARENA_MAX = -8  # mallopt parameter, glibc's malloc.h


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None  # not glibc (musl, macOS)
    return libc


def limit_malloc_arenas(count: int) -> bool:
    """At most ``count`` malloc arenas from now on (0: leave glibc's default); True if set."""
    libc = _libc()
    if libc is None or count <= 0:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, count))


def release_free_memory() -> bool:
    """Return the free memory of every malloc arena to the system; True if any was."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
