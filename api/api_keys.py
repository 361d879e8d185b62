"""API keys: made once, shown once, kept only as SHA-256 hashes in the configuration.

``CUTOUT_API_KEYS="alice:<sha256 hex>,bob:<sha256 hex>"``; the name owns the key's jobs.
``python -m api.api_keys new alice`` makes a key and prints the entry to configure. Keys are
32 random bytes, so a plain SHA-256 is enough at rest (no salt or slow hash is needed).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys

KEY_PREFIX = "ck_"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HASH = re.compile(r"[0-9a-f]{64}")


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def parse_keys(spec: str) -> dict[str, str]:
    """``"name:hash,name:hash"`` → {hash: name}; malformed entries refuse to start."""
    keys: dict[str, str] = {}
    for entry in spec.replace(",", " ").split():
        name, _, digest = entry.partition(":")
        digest = digest.lower()
        if not _NAME.fullmatch(name) or not _HASH.fullmatch(digest):
            raise ValueError(f"bad API key entry {entry[:80]!r}: expected NAME:<sha256 hex>")
        if digest in keys:
            raise ValueError(f"the key of {name!r} is configured twice")
        keys[digest] = name
    return keys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "new" or not _NAME.fullmatch(args[1]):
        print("usage: python -m api.api_keys new NAME   (NAME: letters, digits, _ . -)")
        return 2
    key = new_key()
    print(f"key (give it to the client; it is not stored): {key}")
    print(f"entry for CUTOUT_API_KEYS: {args[1]}:{hash_key(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
