"""The labelled set as compact arrays: every photo and its teacher mask resized to one square
side, in one ``.npz`` file (no pickle) that travels to a GPU box which has no teacher.

Photos are squashed to ``side``×``side`` as the worker squashes them to the model's input
(the aspect is not kept), with some margin over the training input so crops keep detail.
On disk the photos are JPEG and the masks PNG, concatenated with their offsets; in memory
they are plain uint8 arrays. A held-out composite keeps its true alpha too. A photo may travel
unlabelled (``labelled`` False: its mask is empty) for a teacher on the GPU box to label
(``label_pack``), where labelling here would take too long.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Pack:
    images: np.ndarray  # N×S×S×3 uint8
    masks: np.ndarray  # N×S×S uint8: the teacher's soft masks
    holdout: np.ndarray  # N bool
    names: list[str]
    labelled: np.ndarray  # N bool: False where the mask is still to come from a teacher
    # Index → S×S uint8 true alpha (held-out composites only).
    alphas: dict[int, np.ndarray] = field(default_factory=dict)
    teacher: str = ""  # the teacher labels' tag

    @property
    def side(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def split(self, holdout: bool) -> np.ndarray:
        """Indices of the labelled training (or held-out) photos."""
        return np.flatnonzero((self.holdout == holdout) & self.labelled)


def squash(array: np.ndarray, side: int) -> np.ndarray:
    """H×W(×3) uint8 → side×side, antialiased (PIL's resize shrinks with a wide filter)."""
    image = Image.fromarray(array)
    return np.asarray(image.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=None))


def build_pack(
    side: int,
    items: Sequence[tuple[str, np.ndarray, np.ndarray | None, bool, np.ndarray | None]],
    teacher: str,
) -> Pack:
    """``items``: (name, RGB photo, teacher mask or None, held out, true alpha or None)."""
    n = len(items)
    pack = Pack(
        images=np.empty((n, side, side, 3), np.uint8),
        masks=np.zeros((n, side, side), np.uint8),
        holdout=np.zeros(n, bool),
        names=[],
        labelled=np.zeros(n, bool),
        teacher=teacher,
    )
    for i, (name, rgb, mask, holdout, alpha) in enumerate(items):
        pack.images[i], pack.holdout[i] = squash(rgb, side), holdout
        if mask is not None:
            pack.masks[i], pack.labelled[i] = squash(mask, side), True
        pack.names.append(name)
        if alpha is not None:
            pack.alphas[i] = squash(alpha, side)
    return pack


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0, *map(len, blobs)]).astype(np.int64)
    return np.frombuffer(b"".join(blobs), np.uint8), offsets


def _encode(array: np.ndarray, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def save_pack(pack: Pack, path: Path, quality: int = 90) -> int:
    """Write ``pack`` (photos as JPEG at ``quality``, masks as PNG); returns the file's bytes."""
    jpegs, jpeg_offsets = _concat([_encode(im, "JPEG", quality) for im in pack.images])
    pngs, png_offsets = _concat([_encode(m, "PNG", 0) for m in pack.masks])
    alpha_index = np.array(sorted(pack.alphas), np.int64)
    alphas, alpha_offsets = _concat([_encode(pack.alphas[i], "PNG", 0) for i in alpha_index])
    meta = {"format": "cutout-distill-pack-v1", "side": pack.side, "teacher": pack.teacher}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez(
            fh,
            jpegs=jpegs,
            jpeg_offsets=jpeg_offsets,
            pngs=pngs,
            png_offsets=png_offsets,
            alpha_index=alpha_index,
            alphas=alphas,
            alpha_offsets=alpha_offsets,
            holdout=pack.holdout,
            labelled=pack.labelled,
            names=np.array(pack.names, dtype=str),
            meta=np.array(json.dumps(meta)),
        )
    return path.stat().st_size


def load_pack(path: Path) -> Pack:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != "cutout-distill-pack-v1":
            raise ValueError(f"{path} is not a distillation pack")

        def blobs(name: str) -> list[np.ndarray]:
            buf, offsets = data[name], data[name.rstrip("s") + "_offsets"]
            return [
                np.asarray(Image.open(io.BytesIO(buf[a:b].tobytes())))
                for a, b in zip(offsets[:-1], offsets[1:], strict=True)
            ]

        alpha_index = [int(i) for i in data["alpha_index"]]
        return Pack(
            images=np.stack(blobs("jpegs")),
            masks=np.stack(blobs("pngs")),
            holdout=data["holdout"].astype(bool),
            names=[str(n) for n in data["names"]],
            labelled=data["labelled"].astype(bool),
            alphas=dict(zip(alpha_index, blobs("alphas"), strict=True)),
            teacher=meta["teacher"],
        )


def label_pack(
    pack: Pack,
    teacher: Callable[[Sequence[np.ndarray]], list[np.ndarray]],
    tag: str,
    batch: int = 16,
) -> int:
    """Label the pack's unlabelled photos with ``teacher`` (on the squashed photos, so at the
    pack's side); returns how many it labelled."""
    todo = np.flatnonzero(~pack.labelled)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        for i, mask in zip(chunk, teacher([pack.images[i] for i in chunk]), strict=True):
            pack.masks[i], pack.labelled[i] = mask, True
    if len(todo):
        pack.teacher = f"{pack.teacher}; {len(todo)} labelled later by {tag}"
    return len(todo)
