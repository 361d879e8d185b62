"""The one storage interface every back end implements."""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

# Content-addressed keys never change their bytes, so caches may keep them for a year.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"


class InvalidKey(ValueError):
    """A key that is empty, absolute or escapes the store's prefix."""


def normalise_key(key: str) -> str:
    """Clean a key so that ``..`` or an absolute path can never escape the store's root."""
    if "\x00" in key or "\\" in key:
        raise InvalidKey(f"invalid key {key!r}")
    cleaned = posixpath.normpath("/" + key).lstrip("/")
    if not cleaned or cleaned == "." or cleaned != key.strip("/"):
        raise InvalidKey(f"invalid key {key!r}")
    return cleaned


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: float  # seconds since the epoch


class ObjectStore(ABC):
    """Bytes under keys. A missing key raises ``FileNotFoundError``."""

    @abstractmethod
    def check(self) -> None:
        """Prove the store is usable (write and delete a probe); raise ``StorageConfigError``
        naming what is wrong. Called once when a process starts."""

    @abstractmethod
    def save(self, key: str, data: bytes, content_type: str, *, immutable: bool = False) -> None:
        """Store ``data``; ``immutable`` marks content-addressed objects as cacheable forever."""

    @abstractmethod
    def open(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def url(self, key: str) -> str:
        """Where a client fetches ``key``: absolute, or a path on the API (``/files/...``)."""

    @abstractmethod
    def iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a folder such as ``staging/``)."""
