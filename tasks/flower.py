"""Flower, never open: ``python -m tasks.flower [flower options]``.

Credentials come from ``FLOWER_BASIC_AUTH`` (``user:password``, comma-separated for several).
Without them Flower is refused in production (``CUTOUT_ENV``, default ``production``); in
``development`` (what ``make run`` sets) a one-off password is made up and printed. Flower's
other settings come from its own ``FLOWER_*`` variables; persistent mode stays off unless
``FLOWER_PERSISTENT`` says otherwise.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping, Sequence


class FlowerRefused(Exception):
    pass


def basic_auth(env: Mapping[str, str]) -> tuple[str, bool]:
    """The credentials to start Flower with, and whether they were made up here."""
    configured = env.get("FLOWER_BASIC_AUTH", "").strip()
    if configured:
        for pair in configured.split(","):
            user, _, password = pair.partition(":")
            if not user or not password:
                raise FlowerRefused("FLOWER_BASIC_AUTH must be user:password[,user:password...]")
        return configured, False
    mode = env.get("CUTOUT_ENV", "production")
    if mode != "development":
        raise FlowerRefused(
            f"refusing to start Flower without credentials in {mode} mode: set "
            "FLOWER_BASIC_AUTH=user:password (or CUTOUT_ENV=development for a one-off password)"
        )
    return f"admin:{secrets.token_urlsafe(12)}", True


def _announce(credentials: str) -> None:
    user, _, password = credentials.partition(":")
    bar = "*" * 72
    print(
        f"\n{bar}\n  Flower login (development mode, made up for this run):"
        f"\n      user: {user}    password: {password}\n{bar}\n",
        file=sys.stderr,
        flush=True,
    )


def main(argv: Sequence[str]) -> int:
    try:
        credentials, generated = basic_auth(os.environ)
    except FlowerRefused as exc:
        print(f"tasks.flower: {exc}", file=sys.stderr)
        return 2
    if generated:
        _announce(credentials)
    env = {**os.environ, "FLOWER_BASIC_AUTH": credentials}
    env.setdefault("FLOWER_PERSISTENT", "false")
    args = [sys.executable, "-m", "celery", "-A", "tasks.worker", "flower", *argv]
    os.execvpe(args[0], args, env)
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
