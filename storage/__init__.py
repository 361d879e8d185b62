"""Object storage back ends (local disk, S3/R2) and the content-addressed result cache.

Knows nothing of jobs, Flask, Celery or torch.
"""

from __future__ import annotations

from storage.base import ObjectStore
from storage.local import LocalStore
from storage.s3 import S3Store
from storage.settings import StorageConfigError, StorageSettings

STORES: dict[str, type[LocalStore] | type[S3Store]] = {"local": LocalStore, "s3": S3Store}


def build_store(settings: StorageSettings) -> ObjectStore:
    """The configured back end, its settings validated; connects to nothing yet.

    Raises ``StorageConfigError`` naming the unknown back end or the settings at fault."""
    if settings.backend not in STORES:
        raise StorageConfigError(
            f"unknown storage back end CUTOUT_STORAGE={settings.backend!r}; "
            f"known: {', '.join(sorted(STORES))}"
        )
    return STORES[settings.backend].from_settings(settings.validate())


def open_store(settings: StorageSettings) -> ObjectStore:
    """The configured back end, proven usable: what a process calls once when it starts."""
    store = build_store(settings)
    store.check()
    return store


__all__ = ["ObjectStore", "StorageConfigError", "StorageSettings", "build_store", "open_store"]
