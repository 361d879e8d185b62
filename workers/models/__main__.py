"""``python -m workers.models fetch``: make the model weights available (idempotent)."""

from __future__ import annotations

import argparse
import sys

from workers.models.fetch import FetchError, fetch
from workers.settings import WorkerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.models")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch and convert the IS-Net weights into CUTOUT_MODEL_DIR")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        try:
            fetch(WorkerSettings.from_env().model_dir)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
