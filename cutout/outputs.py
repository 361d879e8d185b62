"""Where a photo's outputs go, how they are written, and the summary of a run."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path


def output_path(out_dir: Path, source: Path, name: str, extension: str) -> Path:
    """``photos/cat.jpg`` → ``out/cat.popart.webp`` (``name`` is an effect or ``mask``)."""
    return out_dir / f"{source.stem}.{name}.{extension}"


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file, so an interrupted run never leaves a partial output
    that a later run would take as done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass
class Summary:
    """What happened to each input of one command."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def fail(self, source: Path, reason: str) -> None:
        self.failed.append((source, reason))

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def report(self, done_label: str = "done") -> str:
        total = len(self.done) + len(self.skipped) + len(self.failed)
        parts = [f"{len(self.done)} {done_label}"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (outputs exist)")
        parts.append(f"{len(self.failed)} failed")
        lines = [f"{total} photo{'s' if total != 1 else ''}: {', '.join(parts)}"]
        lines += [f"  failed: {source}: {reason}" for source, reason in self.failed]
        return "\n".join(lines)
