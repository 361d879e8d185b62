"""Teacher labels: the teacher's soft mask of each photo, computed once and cached on disk.

The cache is keyed by the photo's content hash under a folder named for the teacher (model,
weights hash, engine), so a second epoch, a second run, or the same photo uploaded twice never
runs the teacher again, and another teacher never reads these labels. Masks are 8-bit PNGs at
the decoded photo's size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.photos import Photo
from workers.predictor import Segmenter

# RGB photos (H×W×3 uint8) → their soft masks (H×W uint8), one per photo.
Teacher = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def segmenter_teacher(segmenter: Segmenter) -> Teacher:
    """A worker's segmenter as a teacher: the masks it would serve, at each photo's size."""

    def run(images: Sequence[np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(rgb).permute(2, 0, 1) for rgb in images]
        with torch.inference_mode():
            masks = segmenter.predict(tensors)
        return [(m[0] * 255).round().to(torch.uint8).cpu().numpy() for m in masks]

    return run


@dataclass
class TeacherLabels:
    cache_dir: Path
    tag: str  # names the teacher: another model, weights or engine labels into another folder
    teacher: Teacher
    batch_size: int = 1
    runs: int = 0  # photos the teacher labelled in this process
    hits: int = 0  # photos whose label came from the cache

    def path(self, photo: Photo) -> Path:
        return self.cache_dir / self.tag / photo.digest[:2] / f"{photo.digest}.png"

    def cached(self, photo: Photo) -> np.ndarray | None:
        """The photo's label if the cache has it (the teacher is not run)."""
        path = self.path(photo)
        return np.asarray(Image.open(path)) if path.is_file() else None

    def labels(
        self, photos: Sequence[Photo], progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """Each photo's soft mask (H×W uint8 at the decoded photo's size). The teacher runs on
        each distinct photo missing from the cache, ``batch_size`` at a time; a twin (the
        same bytes again) counts as a cache hit."""
        out: dict[str, np.ndarray] = {}
        missing: list[Photo] = []
        for photo in photos:
            path = self.path(photo)
            if photo.digest in out or any(m.digest == photo.digest for m in missing):
                self.hits += 1
            elif path.is_file():
                out[photo.digest] = np.asarray(Image.open(path))
                self.hits += 1
            else:
                missing.append(photo)
                continue
            if progress:
                progress(1)
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            for photo, mask in zip(chunk, self.teacher([p.read() for p in chunk]), strict=True):
                self._store(self.path(photo), mask)
                out[photo.digest] = mask
            self.runs += len(chunk)
            if progress:
                progress(len(chunk))
        return [out[p.digest] for p in photos]

    @staticmethod
    def _store(path: Path, mask: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.png")
        Image.fromarray(mask).save(partial)
        os.replace(partial, path)  # a killed run leaves no half-written label behind
