"""What a job does with its cutout besides the effects: the background behind the subject,
crop to the subject, a fixed output size, alpha-only output and edge refinement.

Torch-free and shared: the API and the CLI parse form values with it, the job record stores
it, the worker reads it. Every option has one canonical text form (``to_form``), which is
also what goes into the content key, so equal options always mean equal results. Bad values
raise ``InvalidOption`` with the machine-readable code the API answers with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

MAX_CANVAS_SIDE = 8192
MAX_BLUR_STRENGTH = 100
DEFAULT_BLUR_STRENGTH = 40
CHANNELS = ("rgba", "alpha")
REFINE = ("none", "edges")

BackgroundKind = Literal["transparent", "color", "blur", "image"]


class InvalidOption(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Background:
    """``rgba`` for a colour; ``strength`` for blur; ``image_sha256`` names an uploaded one."""

    kind: BackgroundKind = "transparent"
    rgba: tuple[int, int, int, int] = (0, 0, 0, 0)
    strength: int = 0
    image_sha256: str = ""

    @property
    def form(self) -> str:
        if self.kind == "color":
            return "#" + "".join(f"{c:02x}" for c in self.rgba)
        return self.kind


@dataclass(frozen=True)
class Margin:
    """Top, right, bottom, left: each ``(value, unit)``, unit ``px`` or ``%`` of the subject's
    height (top, bottom) or width (left, right)."""

    sides: tuple[tuple[float, str], ...] = ((0, "px"),) * 4

    @property
    def form(self) -> str:
        return " ".join(f"{_number(v)}{u}" for v, u in self.sides)

    def pixels(self, subject_width: int, subject_height: int) -> tuple[int, int, int, int]:
        """(top, right, bottom, left) in pixels for a subject of that size."""
        bases = (subject_height, subject_width, subject_height, subject_width)
        return tuple(  # type: ignore[return-value]
            round(v * base / 100) if u == "%" else round(v)
            for (v, u), base in zip(self.sides, bases, strict=True)
        )


@dataclass(frozen=True)
class Layout:
    """Crop to the subject (plus a margin), then fit into ``size`` at ``position`` (percent of
    the free space left of and above the subject: 50, 50 centres it)."""

    crop: bool = False
    margin: Margin = field(default_factory=Margin)
    size: tuple[int, int] | None = None  # (width, height)
    position: tuple[float, float] = (50.0, 50.0)

    @property
    def is_identity(self) -> bool:
        return not self.crop and self.size is None


@dataclass(frozen=True)
class Finishing:
    background: Background = field(default_factory=Background)
    layout: Layout = field(default_factory=Layout)
    refine: str = "none"

    @property
    def is_default(self) -> bool:
        return self == Finishing()

    @property
    def composites(self) -> bool:
        """Whether the effects are put on a background (not left transparent)."""
        return self.background.kind != "transparent"

    def to_form(self) -> dict[str, str]:
        """The non-default options as form fields, canonically written."""
        form: dict[str, str] = {}
        bg = self.background
        if bg.kind != "transparent":
            form["background"] = bg.form
        if bg.kind == "blur":
            form["blur_strength"] = str(bg.strength)
        if bg.kind == "image":
            form["background_image_sha256"] = bg.image_sha256
        layout = self.layout
        if layout.crop:
            form["crop"] = "subject"
            if layout.margin != Margin():
                form["crop_margin"] = layout.margin.form
        if layout.size is not None:
            form["size"] = f"{layout.size[0]}x{layout.size[1]}"
        if layout.size is not None and layout.position != (50.0, 50.0):
            form["position"] = " ".join(f"{_number(p)}%" for p in layout.position)
        if self.refine != "none":
            form["refine"] = self.refine
        return form

    def key_parts(self) -> list[str]:
        """What the content key adds for these options (nothing for the defaults, so the keys
        of jobs without them are unchanged)."""
        return [f"{name}={value}" for name, value in sorted(self.to_form().items())]

    @classmethod
    def from_form(cls, form: Mapping[str, str], image_sha256: str = "") -> Finishing:
        """Parse form fields (missing or empty: the default). ``image_sha256``: the hash of
        an uploaded background image, which makes the background ``image``."""
        background = parse_background(
            form.get("background", ""), form.get("blur_strength", ""), image_sha256
        )
        crop = parse_crop(form.get("crop", ""))
        margin = parse_margin(form.get("crop_margin", ""))
        if margin != Margin() and not crop:
            raise InvalidOption("invalid_crop", "crop_margin needs crop=subject")
        size = parse_size(form.get("size", ""))
        position = parse_position(form.get("position", ""))
        if position != (50.0, 50.0) and size is None:
            raise InvalidOption("invalid_position", "position needs size=WxH")
        refine = form.get("refine", "").strip().lower() or "none"
        if refine not in REFINE:
            raise InvalidOption("invalid_refine", f"refine must be one of {', '.join(REFINE)}")
        return cls(background, Layout(crop, margin, size, position), refine)

    @classmethod
    def from_stored(cls, form: Mapping[str, str]) -> Finishing:
        """From ``to_form``'s fields (a stored record)."""
        return cls.from_form(form, form.get("background_image_sha256", ""))


_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


def parse_background(raw: str, raw_strength: str = "", image_sha256: str = "") -> Background:
    value = raw.strip().lower()
    strength = raw_strength.strip()
    if strength and value != "blur":
        raise InvalidOption("invalid_background", "blur_strength needs background=blur")
    if image_sha256:
        if value not in ("", "image"):
            raise InvalidOption(
                "invalid_background",
                "a background_image was uploaded: leave background empty or set it to 'image'",
            )
        return Background("image", image_sha256=image_sha256)
    if value in ("", "transparent"):
        return Background()
    if value == "image":
        raise InvalidOption(
            "invalid_background", "background=image needs the multipart part 'background_image'"
        )
    if value == "blur":
        try:
            level = int(strength) if strength else DEFAULT_BLUR_STRENGTH
        except ValueError:
            level = -1
        if not 1 <= level <= MAX_BLUR_STRENGTH:
            raise InvalidOption(
                "invalid_background",
                f"blur_strength must be a whole number from 1 to {MAX_BLUR_STRENGTH}",
            )
        return Background("blur", strength=level)
    match = _HEX.fullmatch(value)
    if match is None or not value.startswith("#"):
        raise InvalidOption(
            "invalid_background",
            "background must be transparent, #rrggbb, #rrggbbaa, blur or image",
        )
    digits = match.group(1)
    if len(digits) == 6:
        digits += "ff"
    rgba = tuple(int(digits[i : i + 2], 16) for i in range(0, 8, 2))
    if rgba[3] == 0:
        return Background()  # a fully transparent colour is no background at all
    return Background("color", rgba=rgba)  # type: ignore[arg-type]


def parse_crop(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("", "none", "false", "0"):
        return False
    if value in ("subject", "true", "1"):
        return True
    raise InvalidOption("invalid_crop", "crop must be 'subject' or 'none'")


_LENGTH = re.compile(r"(\d+(?:\.\d+)?)(px|%)?")


def parse_margin(raw: str) -> Margin:
    """One, two (top/bottom, left/right) or four (top, right, bottom, left) lengths, each in
    px (the default unit) or %, separated by spaces or commas; at most 500 px or 50 %."""
    parts = [p for p in re.split(r"[\s,]+", raw.strip().lower()) if p]
    if not parts:
        return Margin()
    if len(parts) not in (1, 2, 4):
        raise InvalidOption("invalid_crop", "crop_margin takes one, two or four lengths")
    sides = []
    for part in parts:
        match = _LENGTH.fullmatch(part)
        if match is None:
            raise InvalidOption(
                "invalid_crop", f"crop_margin {part!r} is not a length such as 30px or 10%"
            )
        value, unit = float(match.group(1)), match.group(2) or "px"
        if value > (50 if unit == "%" else 500):
            raise InvalidOption("invalid_crop", "crop_margin is at most 500px or 50%")
        sides.append((value, unit))
    if len(sides) == 1:
        sides *= 4
    elif len(sides) == 2:
        sides *= 2
    return Margin(tuple(sides))


def parse_size(raw: str) -> tuple[int, int] | None:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return None
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", value)
    if match is None:
        raise InvalidOption("invalid_size", "size must be WxH in pixels, e.g. 1200x800")
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_CANVAS_SIDE and 1 <= height <= MAX_CANVAS_SIDE):
        raise InvalidOption("invalid_size", f"each side of size must be 1 to {MAX_CANVAS_SIDE}")
    return width, height


_NAMED_POSITIONS = {
    "center": (50.0, 50.0),
    "centre": (50.0, 50.0),
    "top": (50.0, 0.0),
    "bottom": (50.0, 100.0),
    "left": (0.0, 50.0),
    "right": (100.0, 50.0),
}


def parse_position(raw: str) -> tuple[float, float]:
    """``center`` (default), ``top``/``bottom``/``left``/``right``, or ``X%`` / ``X% Y%``:
    where the subject sits in the free space (0 %: at the left/top edge)."""
    value = raw.strip().lower()
    if not value:
        return (50.0, 50.0)
    if value in _NAMED_POSITIONS:
        return _NAMED_POSITIONS[value]
    parts = [p for p in re.split(r"[\s,]+", value) if p]
    numbers: list[float] = []
    for part in parts:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)%", part)
        if match is None or float(match.group(1)) > 100:
            numbers = []
            break
        numbers.append(float(match.group(1)))
    if len(numbers) not in (1, 2) or len(numbers) != len(parts):
        raise InvalidOption(
            "invalid_position", "position must be center, top, bottom, left, right, X% or X% Y%"
        )
    return (numbers[0], numbers[-1])


def parse_channels(raw: str) -> str:
    value = raw.strip().lower() or "rgba"
    if value not in CHANNELS:
        raise InvalidOption("invalid_channels", f"channels must be one of {', '.join(CHANNELS)}")
    return value


def _number(value: float) -> str:
    return f"{value:g}"
