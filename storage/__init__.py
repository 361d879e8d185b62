"""Object storage back ends (local disk, S3/R2) and the content-addressed result cache.

Knows nothing of jobs, Flask, Celery or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.base import ObjectStore
from storage.local import LocalStore
from storage.settings import StorageConfigError, StorageSettings

if TYPE_CHECKING:
    from storage.s3 import S3Store

STORES = ("local", "s3")


def _store_class(backend: str) -> type[LocalStore] | type[S3Store]:
    # boto3 and botocore (17 MB) load only where S3 is the back end.
    if backend == "s3":
        from storage.s3 import S3Store

        return S3Store
    return LocalStore


def build_store(settings: StorageSettings) -> ObjectStore:
    """The configured back end, its settings validated; connects to nothing yet.

    Raises ``StorageConfigError`` naming the unknown back end or the settings at fault."""
    if settings.backend not in STORES:
        raise StorageConfigError(
            f"unknown storage back end CUTOUT_STORAGE={settings.backend!r}; "
            f"known: {', '.join(sorted(STORES))}"
        )
    return _store_class(settings.backend).from_settings(settings.validate())


def open_store(settings: StorageSettings) -> ObjectStore:
    """The configured back end, proven usable: what a process calls once when it starts."""
    store = build_store(settings)
    store.check()
    return store


__all__ = ["ObjectStore", "StorageConfigError", "StorageSettings", "build_store", "open_store"]
