"""Files under a directory; the API serves them at ``/files/<key>``."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from storage.base import ObjectInfo, ObjectStore, normalise_key
from storage.settings import StorageConfigError, StorageSettings


class LocalStore(ObjectStore):
    def __init__(self, root: Path, url_prefix: str = "/files") -> None:
        self.root = root
        self.url_prefix = url_prefix.rstrip("/")

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> LocalStore:
        return cls(settings.local_dir)

    def path(self, key: str) -> Path:
        return self.root / normalise_key(key)

    def check(self) -> None:
        probe = f"staging/.probe-{uuid.uuid4().hex}"
        try:
            self.save(probe, b"probe", "text/plain")
            self.delete(probe)
        except OSError as exc:
            raise StorageConfigError(
                f"local storage: cannot write under CUTOUT_LOCAL_DIR={self.root}: {exc}"
            ) from exc

    def save(self, key: str, data: bytes, content_type: str, *, immutable: bool = False) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> bytes:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return f"{self.url_prefix}/{normalise_key(key)}"

    def iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        start = self.root / normalise_key(prefix)
        for folder, _, names in os.walk(start):
            for name in names:
                if name.startswith(".tmp-"):
                    continue  # a save in progress
                path = Path(folder) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # deleted while we walked
                key = path.relative_to(self.root).as_posix()
                yield ObjectInfo(key, stat.st_size, stat.st_mtime)
