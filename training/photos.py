"""A folder of photos as the distillation reads it: listed, hashed, decoded as the worker
decodes uploads (EXIF upright, HEIC accepted), and split into training and held-out photos."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.imageio import decode

SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")
ALPHA_SUFFIX = ".alpha.png"  # a composite's true alpha beside it: NAME.jpg + NAME.alpha.png
# Photos are decoded to at most this long side: the teacher's input is 1024², so its masks
# hold no more detail than this, and labels stay small on disk.
LABEL_SIDE = 1024


@dataclass(frozen=True)
class Photo:
    path: Path
    digest: str  # sha256 of the file's bytes: the key of its teacher label

    def read(self) -> np.ndarray:
        """H×W×3 uint8 RGB, upright, at most ``LABEL_SIDE`` on its long edge."""
        return decode(self.path.read_bytes(), LABEL_SIDE).rgb

    @property
    def alpha_path(self) -> Path:
        return self.path.with_name(self.path.name.rsplit(".", 1)[0] + ALPHA_SUFFIX)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def list_photos(folder: Path) -> list[Photo]:
    """Every photo under ``folder`` (recursively, in a stable order), true alphas left out."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of photos at {folder}")
    return [
        Photo(path, file_digest(path))
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in SUFFIXES and not path.name.endswith(ALPHA_SUFFIX)
    ]


def split_holdout(photos: list[Photo], percent: float) -> tuple[list[Photo], list[Photo]]:
    """(training, held-out) by content hash: a photo stays on its side as the folder grows,
    and a duplicate upload lands on the same side as its twin."""
    held = [p for p in photos if int(p.digest[:8], 16) % 10000 < percent * 100]
    kept = [p for p in photos if p not in held]
    return kept, held
