"""Storage errors worth waiting out, and a window that waits them out with backoff.

Transient: a full disk or quota (an operator frees it), a connection refused, reset or timed
out, an S3 5xx or throttling answer that outlasted botocore's own retries. Permanent (raised at
once): a refused credential, a missing bucket, a read-only file system, a permission error,
a bad key; those do not heal by waiting.
"""

from __future__ import annotations

import errno
import logging
import sys
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("cutout.storage")
T = TypeVar("T")

TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EAGAIN,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EPIPE,
    }
)
# S3's (and R2's) error codes for "slow down" and "try again"; any 5xx status is transient too.
S3_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestThrottled",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
    }
)


class StorageUnavailable(Exception):
    """Transient storage errors went on for longer than the retry window."""


def _botocore_transient(exc: BaseException) -> bool:
    if "botocore" not in sys.modules:  # then no botocore error can have been raised
        return False
    from botocore.exceptions import ClientError, ConnectionClosedError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return status >= 500 or status == 429 or error.get("Code") in S3_TRANSIENT_CODES
    # Endpoint unreachable, connect/read timeouts, a connection closed mid-request.
    return isinstance(exc, (BotoConnectionError, ConnectionClosedError, HTTPClientError))


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps: boto3's S3UploadFailedError wraps a ClientError) is
    a storage error that may go away by itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _botocore_transient(current):
            return True
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if isinstance(current, OSError) and current.errno in TRANSIENT_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


class RetryWindow:
    """Retries calls that fail transiently, with exponential backoff, until ``retry_for``
    seconds have passed since the first of an unbroken run of failures; then raises
    ``StorageUnavailable``. A success closes the run, so a later outage gets a window of its
    own. One window is shared by the calls of a batch, so N jobs waiting out the same outage
    wait ``retry_for`` in all, not N times over."""

    def __init__(
        self,
        retry_for: float,
        *,
        first_delay: float = 0.5,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry_for = retry_for
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.clock = clock
        self.failing_since: float | None = None
        self.retries = 0  # how many calls were made again, in all

    def call(self, fn: Callable[[], T], what: str) -> T:
        delay = self.first_delay
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = self.clock()
                if self.failing_since is None:
                    self.failing_since = now
                left = self.failing_since + self.retry_for - now
                if left <= 0:
                    raise StorageUnavailable(
                        f"storage failed for {now - self.failing_since:.0f} s "
                        f"(CUTOUT_STORAGE_RETRY_FOR={self.retry_for:g}): {exc}"
                    ) from exc
                pause = min(delay, left)
                log.warning("%s failed (%s); trying again in %.1f s", what, exc, pause)
                self.sleep(pause)
                self.retries += 1
                delay = min(delay * 2, self.max_delay)
                continue
            self.failing_since = None
            return result
