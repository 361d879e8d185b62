"""Which photos each API key has uploaded: the proof of possession behind hash-first submits.

A hash-only submit (``jobs/submission.py``'s ``submit_by_hash``) is answered from the result
cache only when the same key has sent those very bytes before; otherwise the client is asked
for the image. So a SHA-256 alone never reaches another key's results: whoever asks must once
have held the photo, exactly as a normal submit of the bytes requires. Entries live as long as
the result cache's (refreshed on every upload).
"""

from __future__ import annotations

import redis


class KnownImages:
    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl = ttl_seconds

    def _key(self, owner: str | None, image_sha256: str) -> str:
        # owner None (auth off): every caller is anonymous and shares one namespace.
        return f"{self.prefix}:uploaded:{owner or '-'}:{image_sha256}"

    def remember(self, owner: str | None, image_sha256: str) -> None:
        self.redis.set(self._key(owner, image_sha256), 1, ex=self.ttl)

    def knows(self, owner: str | None, image_sha256: str) -> bool:
        return bool(self.redis.exists(self._key(owner, image_sha256)))
