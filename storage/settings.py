"""Storage and Redis settings, read from the environment when asked (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# SigV4 presigned URLs live at most seven days.
MAX_URL_LIFETIME = 7 * 24 * 3600
# S3 refuses multipart parts under 5 MiB (except the last).
MIN_MULTIPART_BYTES = 5 * 1024 * 1024


class StorageConfigError(ValueError):
    """Storage settings that cannot work; the message names the setting and the fix."""


@dataclass(frozen=True)
class StorageSettings:
    backend: str = "local"
    local_dir: Path = Path.home() / ".local" / "share" / "cutout" / "files"
    redis_url: str = "redis://127.0.0.1:6379/0"
    job_ttl_seconds: int = 24 * 3600
    key_prefix: str = "cutout"
    # S3 / R2 (R2: endpoint_url = https://<account>.r2.cloudflarestorage.com, region "auto").
    s3_bucket: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None  # both unset: boto3's own chain (env, profile, role)
    s3_secret_access_key: str | None = None
    s3_max_attempts: int = 5  # per request, with exponential backoff on 5xx and timeouts
    s3_timeout_seconds: float = 10.0  # connect and read
    s3_multipart_bytes: int = 16 * 1024 * 1024  # objects this large go up in parts
    # URLs: a public CDN in front of the bucket, else presigned GETs that live this long.
    cdn_base_url: str | None = None
    url_lifetime_seconds: int = 3600
    # Result cache and staging.
    cache_ttl_seconds: int = 30 * 24 * 3600  # refreshed on every hit
    staging_grace_seconds: int = 600  # a staged input younger than this is never swept
    # How long a worker waits out a transient storage outage (full disk, S3 down) before the
    # job fails with storage_unavailable; kept well below CUTOUT_VISIBILITY_TIMEOUT.
    storage_retry_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageSettings:
        env = dict(os.environ if env is None else env)
        default = cls()

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, fallback: int) -> int:
            raw = text(name)
            if raw is None:
                return fallback
            try:
                return int(raw)
            except ValueError:
                raise StorageConfigError(f"{name} must be a whole number, not {raw!r}") from None

        def seconds(name: str, fallback: float) -> float:
            raw = text(name)
            if raw is None:
                return fallback
            try:
                return float(raw)
            except ValueError:
                raise StorageConfigError(
                    f"{name} must be a number of seconds, not {raw!r}"
                ) from None

        return cls(
            backend=text("CUTOUT_STORAGE") or default.backend,
            local_dir=Path(env.get("CUTOUT_LOCAL_DIR", str(default.local_dir))).expanduser(),
            redis_url=env.get("CUTOUT_REDIS_URL", default.redis_url),
            job_ttl_seconds=number("CUTOUT_JOB_TTL", default.job_ttl_seconds),
            key_prefix=env.get("CUTOUT_KEY_PREFIX", default.key_prefix),
            s3_bucket=text("CUTOUT_S3_BUCKET") or "",
            s3_endpoint_url=text("CUTOUT_S3_ENDPOINT_URL"),
            s3_region=text("CUTOUT_S3_REGION"),
            s3_access_key_id=text("CUTOUT_S3_ACCESS_KEY_ID"),
            s3_secret_access_key=text("CUTOUT_S3_SECRET_ACCESS_KEY"),
            s3_max_attempts=number("CUTOUT_S3_MAX_ATTEMPTS", default.s3_max_attempts),
            s3_timeout_seconds=seconds("CUTOUT_S3_TIMEOUT", default.s3_timeout_seconds),
            s3_multipart_bytes=number("CUTOUT_S3_MULTIPART_BYTES", default.s3_multipart_bytes),
            cdn_base_url=text("CUTOUT_CDN_BASE_URL"),
            url_lifetime_seconds=number("CUTOUT_URL_TTL", default.url_lifetime_seconds),
            cache_ttl_seconds=number("CUTOUT_CACHE_TTL", default.cache_ttl_seconds),
            staging_grace_seconds=number("CUTOUT_STAGING_GRACE", default.staging_grace_seconds),
            storage_retry_seconds=seconds(
                "CUTOUT_STORAGE_RETRY_FOR", default.storage_retry_seconds
            ),
        )

    def problems(self) -> list[str]:
        """What is wrong with these settings, one sentence each (empty when they can work)."""
        found = []
        if self.cdn_base_url and urlparse(self.cdn_base_url).scheme not in ("http", "https"):
            found.append(f"CUTOUT_CDN_BASE_URL must be an http(s) URL, not {self.cdn_base_url!r}")
        if not 1 <= self.url_lifetime_seconds <= MAX_URL_LIFETIME:
            found.append(f"CUTOUT_URL_TTL must be between 1 and {MAX_URL_LIFETIME} seconds")
        for name, value in (
            ("CUTOUT_JOB_TTL", self.job_ttl_seconds),
            ("CUTOUT_CACHE_TTL", self.cache_ttl_seconds),
            ("CUTOUT_STAGING_GRACE", self.staging_grace_seconds),
        ):
            if value < 1:
                found.append(f"{name} must be at least 1 second")
        if not 0 <= self.storage_retry_seconds <= 3600:
            found.append("CUTOUT_STORAGE_RETRY_FOR must be between 0 and 3600 seconds")
        if self.backend == "s3":
            found.extend(self._s3_problems())
        return found

    def _s3_problems(self) -> list[str]:
        found = []
        if not self.s3_bucket:
            found.append("CUTOUT_STORAGE=s3 needs CUTOUT_S3_BUCKET (the bucket name)")
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key):
            found.append(
                "set both CUTOUT_S3_ACCESS_KEY_ID and CUTOUT_S3_SECRET_ACCESS_KEY, or neither "
                "(to use boto3's own credential chain)"
            )
        if self.s3_endpoint_url and urlparse(self.s3_endpoint_url).scheme not in ("http", "https"):
            found.append(
                f"CUTOUT_S3_ENDPOINT_URL must be an http(s) URL, not {self.s3_endpoint_url!r}"
            )
        if self.s3_max_attempts < 1:
            found.append("CUTOUT_S3_MAX_ATTEMPTS must be at least 1")
        if self.s3_timeout_seconds <= 0:
            found.append("CUTOUT_S3_TIMEOUT must be a positive number of seconds")
        if self.s3_multipart_bytes < MIN_MULTIPART_BYTES:
            found.append(f"CUTOUT_S3_MULTIPART_BYTES must be at least {MIN_MULTIPART_BYTES}")
        return found

    def validate(self) -> StorageSettings:
        found = self.problems()
        if found:
            raise StorageConfigError("storage settings: " + "; ".join(found))
        return self
