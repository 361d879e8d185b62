"""Augmentations for phone photos, applied alike to a photo and its mask where geometry moves.

From a packed square (see ``training.pack``): a random crop (scale and aspect), a small
rotation (hand-held tilt; EXIF has already turned the photo upright), a horizontal flip, colour
jitter (exposure, contrast, saturation, white balance), sometimes a softer focus, and JPEG
re-compression at a random quality (uploads arrive re-encoded, often more than once).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter


@dataclass(frozen=True)
class PhonePhotoAugment:
    size: int  # the model's training input side
    scale: tuple[float, float] = (0.45, 1.0)  # crop area, as a share of the photo's
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    max_rotation: float = 12.0  # degrees
    jitter: float = 0.3  # brightness, contrast, saturation: ×[1 - j, 1 + j]
    white_balance: float = 0.08  # per-channel gain: ×[1 - w, 1 + w]
    blur: float = 0.15  # chance of a slightly soft focus
    jpeg: float = 0.6  # chance of JPEG re-compression
    jpeg_quality: tuple[int, int] = (35, 95)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """S×S×3 and S×S uint8 (any S) → ``size``×``size``×3 and ``size``×``size`` uint8."""
        photo, label = Image.fromarray(image), Image.fromarray(mask)
        if self.max_rotation and rng.random() < 0.5:
            angle = float(rng.uniform(-self.max_rotation, self.max_rotation))
            fill = tuple(int(c) for c in image.reshape(-1, 3).mean(0))
            photo = photo.rotate(angle, Image.Resampling.BILINEAR, fillcolor=fill)
            label = label.rotate(angle, Image.Resampling.BILINEAR, fillcolor=0)
        box = self._crop_box(photo.width, photo.height, rng)
        target = (self.size, self.size)
        photo = photo.resize(target, Image.Resampling.BILINEAR, box=box, reducing_gap=None)
        label = label.resize(target, Image.Resampling.BILINEAR, box=box, reducing_gap=None)
        if rng.random() < 0.5:
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            label = label.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        photo = self._colour(photo, rng)
        if rng.random() < self.blur:
            photo = photo.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.2))))
        if rng.random() < self.jpeg:
            out = io.BytesIO()
            photo.save(out, "JPEG", quality=int(rng.integers(*self.jpeg_quality)))
            photo = Image.open(out)
        return np.asarray(photo.convert("RGB")), np.asarray(label)

    def _crop_box(
        self, width: int, height: int, rng: np.random.Generator
    ) -> tuple[float, float, float, float]:
        area = width * height * rng.uniform(*self.scale)
        aspect = np.exp(rng.uniform(np.log(self.ratio[0]), np.log(self.ratio[1])))
        w = min(width, (area * aspect) ** 0.5)
        h = min(height, (area / aspect) ** 0.5)
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        return (x, y, x + w, y + h)

    def _colour(self, photo: Image.Image, rng: np.random.Generator) -> Image.Image:
        j = self.jitter
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            photo = enhance(photo).enhance(float(rng.uniform(1 - j, 1 + j)))
        gains = rng.uniform(1 - self.white_balance, 1 + self.white_balance, 3)
        balanced = np.asarray(photo, np.float32) * gains
        return Image.fromarray(balanced.clip(0, 255).astype(np.uint8))
