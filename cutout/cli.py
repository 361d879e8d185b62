"""``cutout process`` (in-process, no server) and ``cutout submit`` (to a running service).

Exit status: 0 when every photo succeeded (or was already done), 1 when some failed (a
summary on stderr names each one and why), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from contract.effects import EFFECT_NAMES, OUTPUT_FORMATS

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_MAX_SIZE = 2048  # the API's default too


def _effect_list(raw: str) -> list[str]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in EFFECT_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown effects {unknown}; choose from {','.join(EFFECT_NAMES)}"
        )
    return names


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--effects",
        type=_effect_list,
        action="extend",
        metavar="NAME,…",
        help=f"comma list of effects (default: all of {','.join(EFFECT_NAMES)})",
    )
    parser.add_argument(
        "--format", choices=OUTPUT_FORMATS, help="output image format (default: webp)"
    )
    parser.add_argument(
        "--max-size",
        type=_positive_int,
        metavar="PX",
        help=f"long edge of the outputs in pixels (default: {DEFAULT_MAX_SIZE})",
    )
    parser.add_argument("--mask", action="store_true", help="also save the mask as PNG")
    look = parser.add_argument_group("background, crop and size (see docs/options.md)")
    look.add_argument(
        "--background",
        metavar="BG",
        help="transparent (default), #rrggbb, #rrggbbaa, blur, or an image file to put behind",
    )
    look.add_argument("--blur-strength", metavar="1-100", help="with --background blur")
    look.add_argument("--crop", action="store_true", help="crop to the subject")
    look.add_argument("--crop-margin", metavar="M", help="with --crop: e.g. 30px, 10%%, 10px 5%%")
    look.add_argument("--size", metavar="WxH", help="fit into a fixed output size")
    look.add_argument("--position", metavar="P", help="with --size: center, top, X%%, X%% Y%%")
    look.add_argument(
        "--alpha-only", action="store_true", help="only the mask, as a single-channel PNG"
    )
    look.add_argument(
        "--refine-edges", action="store_true", help="refine the mask's edges against the photo"
    )


def finishing_form(args: argparse.Namespace) -> tuple[dict[str, str], Path | None]:
    """The finishing options as the API's form fields, and the background image file (when
    ``--background`` names one); raises ``InvalidOption`` for a bad value."""
    from contract.options import Finishing

    form = {
        "background": args.background or "",
        "blur_strength": args.blur_strength or "",
        "crop": "subject" if args.crop else "",
        "crop_margin": args.crop_margin or "",
        "size": args.size or "",
        "position": args.position or "",
        "refine": "edges" if args.refine_edges else "",
    }
    picture = None
    value = form["background"].strip().lower()
    if value and not value.startswith("#") and value not in ("transparent", "blur"):
        picture = Path(form.pop("background"))
    Finishing.from_form(form, "checked" if picture else "")  # validate here, before any work
    return {name: value for name, value in form.items() if value}, picture


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cutout",
        description="Remove photo backgrounds and render the four cutout effects.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    process = commands.add_parser(
        "process",
        help="process a photo or a folder of photos here, without a server",
        description="Run the worker pipeline in this process. Photos whose outputs all exist "
        "are skipped. Outputs are named OUT/<photo>.<effect>.<format>.",
    )
    process.add_argument("input", type=Path, metavar="FILE|DIR")
    process.add_argument("--out", type=Path, required=True, metavar="DIR")
    process.add_argument(
        "--batch-size",
        type=_positive_int,
        default=4,
        metavar="N",
        help="photos per model call (default: 4)",
    )
    _add_output_options(process)

    submit = commands.add_parser(
        "submit",
        help="send photos to a running cutout service",
        description="Submit photos to the service's API and print each job (each photo's "
        "SHA-256 goes first: a photo the service has already processed for this key is not "
        "uploaded again). With --wait, follow the jobs' event streams (polling where a stream "
        "fails) and download their outputs as OUT/<photo>.<effect>.<format>.",
    )
    submit.add_argument("files", type=Path, nargs="+", metavar="FILE")
    submit.add_argument(
        "--url",
        default=os.environ.get("CUTOUT_URL", DEFAULT_URL),
        help=f"the service (default: $CUTOUT_URL or {DEFAULT_URL})",
    )
    submit.add_argument(
        "--api-key",
        default=os.environ.get("CUTOUT_API_KEY", ""),
        metavar="KEY",
        help="the API key, sent as a Bearer token (default: $CUTOUT_API_KEY; none when unset)",
    )
    submit.add_argument("--wait", action="store_true", help="wait for the jobs and download")
    submit.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="where --wait saves outputs"
    )
    submit.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="longest wait per job"
    )
    _add_output_options(submit)
    return parser


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _echo(message: str) -> None:
    print(message, flush=True)


def run_process(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cutout.local import IMAGE_SUFFIXES, ProcessOptions, find_images, open_pipeline, process

    out_dir: Path = args.out
    if args.input.is_dir() and out_dir.resolve() == args.input.resolve():
        _log("cutout: choose an --out folder other than the input folder")
        return 2
    try:
        images = find_images(args.input)
    except FileNotFoundError as exc:
        _log(f"cutout: {exc}")
        return 2
    if not images:
        _log(f"cutout: no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) in {args.input}")
        return 2
    from contract.options import Finishing, InvalidOption

    try:
        form, picture = finishing_form(args)
        background = picture.read_bytes() if picture else None
    except (InvalidOption, OSError) as exc:
        _log(f"cutout: {exc}")
        return 2
    sha = hashlib.sha256(background).hexdigest() if background else ""
    options = ProcessOptions(
        effects=() if args.alpha_only else tuple(dict.fromkeys(args.effects or EFFECT_NAMES)),
        max_size=args.max_size or DEFAULT_MAX_SIZE,
        format=args.format or "webp",
        mask=args.mask or args.alpha_only,
        finishing=Finishing.from_form(form, sha),
        background=background,
    )
    try:
        summary = process(
            images,
            out_dir,
            options,
            lambda: open_pipeline(_log),
            args.batch_size,
            lambda total: tqdm(total=total, unit="photo", desc="cutout", disable=None),
        )
    except FileNotFoundError as exc:  # the model weights
        _log(f"cutout: {exc}")
        return 2
    _log(summary.report())
    return summary.exit_code


def run_submit(args: argparse.Namespace) -> int:
    from contract.options import InvalidOption
    from cutout.client import Client
    from cutout.remote import SubmitOptions, submit_all, wait_and_download

    try:
        form, picture = finishing_form(args)
    except InvalidOption as exc:
        _log(f"cutout: {exc}")
        return 2
    if args.alpha_only:
        form["channels"] = "alpha"
    options = SubmitOptions(
        effects=list(dict.fromkeys(args.effects)) if args.effects else None,
        max_size=args.max_size,
        format=args.format,
        mask=args.mask or args.alpha_only,
        form=form,
        background=picture,
    )
    with Client(args.url, api_key=args.api_key) as client:
        queued, summary = submit_all(client, args.files, options, _echo)
        if args.wait:
            wait_and_download(client, queued, args.out, options, args.timeout, summary, _echo)
        else:
            summary.done.extend(source for source, _ in queued)
    _log(summary.report("done" if args.wait else "submitted"))
    return summary.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "process":
        return run_process(args)
    return run_submit(args)
