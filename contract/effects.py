"""The effect names a job may ask for, their definition version, and the output formats."""

from __future__ import annotations

EFFECT_NAMES: tuple[str, ...] = ("color", "enhancedblackwhite", "popart", "dithering")

# The effects a client can render itself from the ``color`` output (a PNG) with the browser
# module (wasm/, docs/browser-effects.md): a job's ``client_effects`` leaves them to it.
CLIENT_EFFECTS: tuple[str, ...] = ("enhancedblackwhite", "popart", "dithering")

# Bump when an effect's output changes: it is part of every content key, so cached results
# made by an older definition are never served for a newer one.
EFFECTS_VERSION = "3"

# webp: RGBA WebP; png: RGBA PNG; jpg+mask: each effect without alpha (JPEG where lossy is
# fine) plus one shared greyscale mask. See workers/outputs.py for the codec of each effect.
OUTPUT_FORMATS: tuple[str, ...] = ("webp", "png", "jpg+mask")
