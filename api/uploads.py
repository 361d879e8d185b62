"""Upload validation: the real type from magic bytes, the size from the header alone."""

from __future__ import annotations

import hashlib
import io
from typing import IO

from flask import Request
from werkzeug.datastructures import FileStorage, MultiDict

from api.errors import ApiError
from contract.effects import CLIENT_EFFECTS, EFFECT_NAMES, OUTPUT_FORMATS
from contract.formats import ImageInfo, InvalidImage, probe, sniff
from contract.options import Finishing, InvalidOption, parse_channels
from contract.truncation import truncated
from jobs.record import JobOptions

MAX_PIXELS = 100_000_000
MIN_SIDE = 16  # below this there is no subject to cut out
MAX_OUTPUT_SIDE = 8192


class InMemoryUploadRequest(Request):
    """Keeps uploaded files in memory instead of spooling those over 500 KB to a temporary
    file: the body is capped (``MAX_CONTENT_LENGTH``) and read whole anyway, and the disk
    round trip was about half the cost of parsing a 2 MB upload."""

    def _get_file_stream(  # type: ignore[override]
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return io.BytesIO()


def read_image(files: MultiDict[str, FileStorage], field: str = "image") -> tuple[bytes, ImageInfo]:
    """The photo (or, with ``field="background_image"``, the background image: checked the
    same way, and the error says which part it was about)."""
    upload = files.get(field)
    if upload is None:
        raise ApiError(400, "missing_image", "send the photo as the multipart field 'image'")
    try:
        return _checked(upload.read())
    except ApiError as exc:
        if field != "image":
            exc.extra["field"] = field
            exc.message = f"{field}: {exc.message}"
        raise


def read_background(files: MultiDict[str, FileStorage]) -> bytes | None:
    """The uploaded background image, if one was sent."""
    if files.get("background_image") is None:
        return None
    return read_image(files, "background_image")[0]


def _checked(data: bytes) -> tuple[bytes, ImageInfo]:
    if not data:
        raise ApiError(400, "empty_image", "the uploaded file is empty")
    if sniff(data) is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "the file is not a JPEG, PNG, WebP or HEIC image (its contents were checked, "
            "not its name)",
        )
    try:
        info = probe(data)
    except InvalidImage as exc:
        raise ApiError(422, "invalid_image", str(exc)) from exc
    if info.width * info.height > MAX_PIXELS:
        raise ApiError(
            422,
            "image_too_large",
            f"the image is {info.width}x{info.height} ({info.megapixels:.0f} MP); "
            f"the limit is {MAX_PIXELS // 1_000_000} MP",
        )
    if min(info.width, info.height) < MIN_SIDE:
        raise ApiError(
            422,
            "image_too_small",
            f"the image is {info.width}x{info.height}; both sides must be {MIN_SIDE} px or more",
        )
    cut = truncated(data, info.format)
    if cut:  # the worker would fail it the same way; say so now, for free
        raise ApiError(422, "invalid_image", f"cannot decode the {info.format} image: {cut}")
    return data, info


def parse_options(
    form: MultiDict[str, str], default_max_size: int = 2048, background: bytes | None = None
) -> JobOptions:
    """The job's options from the form; ``background``: the uploaded background image."""
    raw_effects = form.get("effects", "").strip()
    if raw_effects:
        effects = tuple(dict.fromkeys(e.strip() for e in raw_effects.split(",") if e.strip()))
        unknown = [e for e in effects if e not in EFFECT_NAMES]
        if unknown or not effects:
            raise ApiError(
                400,
                "invalid_effects",
                f"unknown effects {unknown}; choose from {', '.join(EFFECT_NAMES)}",
            )
    else:
        effects = EFFECT_NAMES
    raw_size = form.get("max_size", "").strip()
    try:
        max_size = int(raw_size) if raw_size else default_max_size
    except ValueError:
        raise ApiError(
            400, "invalid_max_size", "max_size must be a whole number of pixels"
        ) from None
    if not 1 <= max_size <= MAX_OUTPUT_SIDE:
        raise ApiError(400, "invalid_max_size", f"max_size must be between 1 and {MAX_OUTPUT_SIDE}")
    client = _client_effects(form)
    fmt = form.get("format", "").strip().lower() or ("png" if client else "webp")
    if fmt not in OUTPUT_FORMATS:
        raise ApiError(400, "invalid_format", f"format must be one of {', '.join(OUTPUT_FORMATS)}")
    if client:
        if fmt != "png":
            raise ApiError(
                400,
                "invalid_client_effects",
                "client_effects needs format=png: the client renders from the lossless cutout",
            )
        # The server makes the colour cutout (the client's input) and what is left.
        effects = tuple(
            e for e in EFFECT_NAMES if e == "color" or (e in effects and e not in client)
        )
    preview = form.get("preview", "").strip().lower() or "false"
    if preview not in BOOLEANS:
        raise ApiError(400, "invalid_preview", "preview must be true or false")
    sha = hashlib.sha256(background).hexdigest() if background is not None else ""
    try:
        finishing = Finishing.from_form(form, sha)
        channels = parse_channels(form.get("channels", ""))
    except InvalidOption as exc:
        raise ApiError(400, exc.code, exc.message) from None
    if client and (finishing.composites or not finishing.layout.is_identity or channels == "alpha"):
        # The client renders from the plain cutout; a background, a crop or a size would have
        # to be redone on its side after the effects.
        raise ApiError(
            400,
            "invalid_client_effects",
            "client_effects needs the plain cutout: no background, crop, size or channels=alpha",
        )
    if channels == "alpha":
        effects = ()  # the mask alone: one single-channel PNG
    return JobOptions(effects, max_size, fmt, BOOLEANS[preview], finishing, channels)


def _client_effects(form: MultiDict[str, str]) -> tuple[str, ...]:
    """The effects the client will render itself (wasm/), which the server then skips."""
    raw = form.get("client_effects", "").strip()
    names = tuple(dict.fromkeys(e.strip() for e in raw.split(",") if e.strip()))
    unknown = [e for e in names if e not in CLIENT_EFFECTS]
    if unknown:
        raise ApiError(
            400,
            "invalid_client_effects",
            f"a client renders only {', '.join(CLIENT_EFFECTS)}; not {unknown}",
        )
    return names


BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
