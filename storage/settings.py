"""Storage and Redis settings, read from the environment when asked (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StorageSettings:
    backend: str = "local"
    local_dir: Path = Path.home() / ".local" / "share" / "cutout" / "files"
    redis_url: str = "redis://127.0.0.1:6379/0"
    job_ttl_seconds: int = 24 * 3600
    key_prefix: str = "cutout"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StorageSettings:
        env = dict(os.environ if env is None else env)
        default = cls()
        return cls(
            backend=env.get("CUTOUT_STORAGE", default.backend),
            local_dir=Path(env.get("CUTOUT_LOCAL_DIR", str(default.local_dir))).expanduser(),
            redis_url=env.get("CUTOUT_REDIS_URL", default.redis_url),
            job_ttl_seconds=int(env.get("CUTOUT_JOB_TTL", default.job_ttl_seconds)),
            key_prefix=env.get("CUTOUT_KEY_PREFIX", default.key_prefix),
        )
