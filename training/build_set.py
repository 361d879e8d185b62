"""``python -m training.build_set --out DIR``: the project's own training and evaluation photos,
built reproducibly from packages (nothing here is committed: the images are made on demand).

- Photos: scikit-image's bundled samples and the wallpapers of Debian's desktop packages.
- Composites with a true alpha: cut-outs with real transparency (Tux Paint's stamps, most of
  them photographs of animals, food and things; Open Clip Art's PNGs) pasted on random crops
  of those photos. Their alpha is the ground truth the student and the teacher are both
  measured against.

The Debian packages are fetched with ``apt-get download`` at pinned versions and checked
against pinned sha256 sums; every random choice comes from ``--seed``. Layout::

    DIR/train/                   photos and composites to distil on (JPEG)
    DIR/holdout/photos/          held-out photos (the quality gate's eight among them)
    DIR/holdout/composites/      held-out composites: NAME.jpg and its alpha NAME.alpha.png
    DIR/manifest.json            packages, sums, seed and counts

Held-out composites use held-out backgrounds and cut-outs that no training composite uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from workers.photos import CALIBRATION_PHOTOS, GATE_PHOTOS, load_photo


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    sha256: str
    images: str  # the directory (inside the package) whose raster images we take


WALLPAPERS = (
    DebianPackage(
        "plasma-workspace-wallpapers",
        "4:5.27.5-2",
        "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
        "usr/share/wallpapers",
    ),
    DebianPackage(
        "gnome-backgrounds",
        "43.1-1",
        "a670dea21572652127d6e55f9cdb3a226d0037854fdbfd037003c7d00ee0dc4e",
        "usr/share/backgrounds",
    ),
    DebianPackage(
        "mate-backgrounds",
        "1.26.0-1",
        "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
        "usr/share/backgrounds",
    ),
    DebianPackage(
        "ukui-wallpapers",
        "20.04.3-1.1",
        "6d49be70152e6d603163458e177e501deb0be8f2916389ccbfcf59b0d7fc0262",
        "usr/share/backgrounds",
    ),
    DebianPackage(
        "sway-backgrounds",
        "1.7-6",
        "bbd637e4a27eb305beb88f2a5ba34ab53f86b2027066ffe3ed814d6b221220b5",
        "usr/share/backgrounds",
    ),
    DebianPackage(
        "lomiri-wallpapers",
        "20.04.0-2",
        "6b75961132a2035f9c4db79f725a7290092619c5c8f672071c84cb5b10898e07",
        "usr/share/backgrounds",
    ),
)
CUTOUTS = (
    DebianPackage(
        "tuxpaint-stamps-default",
        "2022.06.04-1",
        "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34",
        "usr/share/tuxpaint/stamps",
    ),
    DebianPackage(
        "openclipart-png",
        "1:0.18+dfsg-19",
        "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02",
        "usr/share/openclipart/png",
    ),
)
# Tux Paint stamps that are glyphs, not things.
SKIP_STAMPS = ("symbols/alphabets", "symbols/math", "symbols/music", "town/roadsigns")
EXTRA_SKIMAGE = ("grass", "gravel", "brick", "cell", "page", "text")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
LONG_SIDE = 2048  # photos are stored at most this large (a phone upload's size, not a 5K poster)
HOLDOUT_PERCENT = 15


def sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fetch_package(pkg: DebianPackage, debs: Path, into: Path) -> Path:
    """Download ``pkg`` (cached in ``debs``), check its sum, unpack it under ``into``."""
    debs.mkdir(parents=True, exist_ok=True)
    found = list(debs.glob(f"{pkg.name}_*.deb"))
    if not found:
        spec = f"{pkg.name}={pkg.version}"
        proc = subprocess.run(
            ["apt-get", "download", spec], cwd=debs, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            sys.exit(f"apt-get download {spec} failed (run apt-get update?): {proc.stderr}")
        found = list(debs.glob(f"{pkg.name}_*.deb"))
    actual = sha256(found[0])
    if actual != pkg.sha256:
        sys.exit(f"{found[0].name}: sha256 {actual} != pinned {pkg.sha256}")
    target = into / pkg.name
    subprocess.run(["dpkg-deb", "-x", str(found[0]), str(target)], check=True)
    return target / pkg.images


def in_holdout(key: str) -> bool:
    """A stable split: the same file is always on the same side, however the set grows."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < HOLDOUT_PERCENT


def wallpaper_files(root: Path) -> list[Path]:
    """One file per wallpaper: the largest of each folder's sizes (Plasma ships one image per
    screen size) and of each name's sizes (``Elephants_3840x2160.jpg``)."""
    best: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or "screenshot" in path.name.lower():
            continue
        folder = "contents/images" in path.as_posix()
        key = path.parent.as_posix() if folder else re.sub(r"_?\d+x\d+", "", path.stem)
        if key not in best or path.stat().st_size > best[key].stat().st_size:
            best[key] = path
    return sorted(best.values())


def save_photo(rgb: Image.Image, dest: Path) -> None:
    rgb = rgb.convert("RGB")
    rgb.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rgb.save(dest, "JPEG", quality=92)


def cutout_files(root: Path, skip: tuple[str, ...] = ()) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*.png")
        if not any(part in p.relative_to(root).as_posix() for part in skip)
    )


def usable_cutout(path: Path) -> Image.Image | None:
    """The cut-out cropped to its alpha's box, or None when it is no cut-out: no transparency,
    too small, or too sparse inside its box (line art, text)."""
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError):
        return None
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba)[..., 3]
    if alpha.min() > 0:  # opaque everywhere: a picture, not a cut-out
        return None
    box = Image.fromarray(alpha).getbbox()
    if box is None:
        return None
    crop = rgba.crop(box)
    a = np.asarray(crop)[..., 3]
    if min(crop.size) < 96 or (a > 127).mean() < 0.3:
        return None
    return crop


def composite(
    background: Image.Image, cutout: Image.Image, rng: np.random.Generator
) -> tuple[Image.Image, Image.Image]:
    """The cut-out pasted on a random crop of ``background``; returns the RGB photo and its
    true alpha. The subject's box covers 10–60 % of the frame; photos are 4:3, 3:4 or 1:1."""
    w, h = [(1024, 768), (768, 1024), (896, 896)][rng.integers(3)]
    scale = max(w / background.width, h / background.height) * rng.uniform(1.0, 1.6)
    bg = background.convert("RGB").resize(
        (max(w, round(background.width * scale)), max(h, round(background.height * scale))),
        Image.Resampling.BICUBIC,
    )
    x0, y0 = int(rng.integers(bg.width - w + 1)), int(rng.integers(bg.height - h + 1))
    frame = bg.crop((x0, y0, x0 + w, y0 + h))
    cover = rng.uniform(0.1, 0.6)
    fit = (cover * w * h / (cutout.width * cutout.height)) ** 0.5
    fit = min(fit, 0.95 * w / cutout.width, 0.95 * h / cutout.height)
    size = (max(8, round(cutout.width * fit)), max(8, round(cutout.height * fit)))
    subject = cutout.resize(size, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        subject = subject.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pos = (int(rng.integers(w - size[0] + 1)), int(rng.integers(h - size[1] + 1)))
    alpha = Image.new("L", (w, h), 0)
    alpha.paste(subject.getchannel("A"), pos)
    frame.paste(subject.convert("RGB"), pos, subject.getchannel("A"))
    return frame, alpha


def build(out: Path, debs: Path, seed: int, train_composites: int, holdout_composites: int) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    counts = {"train_photos": 0, "holdout_photos": 0, "train_composites": 0}
    packages = {}
    with tempfile.TemporaryDirectory(prefix="cutout-set-") as tmp:
        backgrounds: dict[bool, list[Path]] = {False: [], True: []}

        def add_photo(image: Image.Image, name: str, holdout: bool) -> None:
            dest = out / ("holdout/photos" if holdout else "train") / f"{name}.jpg"
            save_photo(image, dest)
            backgrounds[holdout].append(dest)
            counts["holdout_photos" if holdout else "train_photos"] += 1

        for name in GATE_PHOTOS:  # the gate's photos are always held out
            add_photo(Image.fromarray(load_photo(name)), f"skimage-{name}", True)
        for name in (*CALIBRATION_PHOTOS, *EXTRA_SKIMAGE):
            add_photo(Image.fromarray(load_photo(name)), f"skimage-{name}", False)
        for pkg in WALLPAPERS:
            root = fetch_package(pkg, debs, Path(tmp))
            packages[pkg.name] = {"version": pkg.version, "sha256": sha256(_deb(debs, pkg))}
            for path in wallpaper_files(root):
                key = f"{pkg.name}/{path.relative_to(root).as_posix()}"
                name = f"{pkg.name}-{key.replace('/', '-').rsplit('.', 1)[0]}"[:120]
                with Image.open(path) as image:
                    add_photo(image, name, in_holdout(key))

        # Per side of the split, one list per package: each composite first picks a package,
        # so Tux Paint's few hundred photographs weigh as much as Open Clip Art's thousands.
        cutouts: dict[bool, list[list[Path]]] = {False: [], True: []}
        for pkg in CUTOUTS:
            root = fetch_package(pkg, debs, Path(tmp))
            packages[pkg.name] = {"version": pkg.version, "sha256": sha256(_deb(debs, pkg))}
            skip = SKIP_STAMPS if pkg.name.startswith("tuxpaint") else ()
            files = cutout_files(root, skip)
            for holdout in (False, True):
                key = pkg.name
                cutouts[holdout].append(
                    [p for p in files if in_holdout(f"{key}/{p.relative_to(root)}") == holdout]
                )

        for holdout, n in ((False, train_composites), (True, holdout_composites)):
            made = 0
            while made < n:
                pool = cutouts[holdout][rng.integers(len(cutouts[holdout]))]
                cut = usable_cutout(pool[rng.integers(len(pool))])
                if cut is None:
                    continue
                with Image.open(
                    backgrounds[holdout][rng.integers(len(backgrounds[holdout]))]
                ) as bg:
                    photo, alpha = composite(bg, cut, rng)
                folder = out / ("holdout/composites" if holdout else "train")
                folder.mkdir(parents=True, exist_ok=True)
                photo.save(folder / f"composite-{made:04d}.jpg", "JPEG", quality=92)
                if holdout:
                    alpha.save(folder / f"composite-{made:04d}.alpha.png")
                made += 1
            counts["holdout_composites" if holdout else "train_composites"] = made
    manifest = {"seed": seed, "packages": packages, "counts": counts}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _deb(debs: Path, pkg: DebianPackage) -> Path:
    return next(debs.glob(f"{pkg.name}_*.deb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.build_set", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--debs", type=Path, help="where downloaded packages are kept")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--composites", type=int, default=200, help="training composites")
    parser.add_argument("--holdout-composites", type=int, default=40)
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    Image.MAX_IMAGE_PIXELS = None  # some wallpapers are 170 Mpx; these are package files
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        parser.error("building the set needs Debian's apt-get and dpkg-deb")
    manifest = build(
        args.out,
        args.debs or args.out / "debs",
        args.seed,
        args.composites,
        args.holdout_composites,
    )
    print(json.dumps(manifest["counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
