"""Object storage back ends, the job store and the result cache.

Knows nothing of Flask or Celery.
"""

from __future__ import annotations

from storage.base import ObjectStore
from storage.local import LocalStore
from storage.settings import StorageSettings

STORES = {"local": LocalStore}


def build_store(settings: StorageSettings) -> ObjectStore:
    """The configured back end; unknown names raise ``KeyError`` listing the known ones."""
    if settings.backend not in STORES:
        raise KeyError(
            f"unknown storage back end {settings.backend!r}; known: {', '.join(sorted(STORES))}"
        )
    return STORES[settings.backend].from_settings(settings)


__all__ = ["ObjectStore", "StorageSettings", "build_store"]
