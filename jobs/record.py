"""A job's record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobOptions:
    effects: tuple[str, ...]
    max_size: int
    format: str
    preview: bool = False  # small previews of the effects first; not part of the content key

    def as_dict(self) -> dict[str, object]:
        options = {"effects": list(self.effects), "max_size": self.max_size, "format": self.format}
        return {**options, "preview": True} if self.preview else options
