"""Carry the IS-Net weights to a lent GPU box, whose working-tree copy is capped at 64 MiB.

    python -m bench.carry_weights pack WEIGHTS.safetensors OUT.safetensors.xz   # here: ~38 MB
    python -m bench.carry_weights unpack IN.safetensors.xz WEIGHTS.safetensors  # there

The fp32 safetensors file is 176 MB and nothing there can fetch it. ``pack`` stores each conv
weight as int8 with one fp32 scale per output channel (biases as fp32); ``unpack`` turns them
back into an fp32 file the workers load as usual. A name ending in ``.xz`` is compressed
(xz, what Python's lzma reads everywhere): int8 weights lose another 14 %. The result is not
the published weights (each weight moves by at most half a step of its channel's scale): the
GPU run compares its engines with eager on the same unpacked weights, and ``compare``
measures here how far the unpacked weights' masks are from the real ones'.

    python -m bench.carry_weights compare REAL.safetensors UNPACKED.safetensors
"""

from __future__ import annotations

import lzma
import sys
from pathlib import Path

import torch
from safetensors.torch import load, load_file, save, save_file

from workers.models.fetch import MEDIUM, WEIGHTS_FORMAT

SCALE = ".int8_scale"


def pack(source: Path, dest: Path) -> None:
    tensors = load_file(str(source))
    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if t.ndim < 2:
            out[name] = t.float()
            continue
        rows = t.float().flatten(1)
        scale = rows.abs().amax(1).clamp_min(1e-12) / 127
        out[name] = (rows / scale[:, None]).round().clamp(-127, 127).to(torch.int8).view(t.shape)
        out[name + SCALE] = scale
    data = save(out, metadata={"format": "cutout-carry-int8"})
    dest.write_bytes(lzma.compress(data) if dest.suffix == ".xz" else data)


def unpack(source: Path, dest: Path) -> None:
    data = source.read_bytes()
    packed = load(lzma.decompress(data) if source.suffix == ".xz" else data)
    out = {}
    for name, t in packed.items():
        if name.endswith(SCALE):
            continue
        scale = packed.get(name + SCALE)
        out[name] = (
            t.float() if scale is None else (t.float().flatten(1) * scale[:, None]).view(t.shape)
        )
    # The workers' own format tag, so they load it; the source hash says it is a carried copy.
    save_file(out, str(dest), metadata={"format": WEIGHTS_FORMAT, "source_sha256": "carried-int8"})


def compare(real: Path, unpacked: Path) -> None:
    """Mean and worst mask IoU of the unpacked weights against the real ones (eager, CPU)."""
    from workers.engines.gate import mask_iou
    from workers.models import build_model, model_config
    from workers.photos import GATE_PHOTOS, load_photos
    from workers.predictor import preprocess

    config = model_config("isnet-general-use")
    models = [build_model("isnet-general-use", path).eval() for path in (real, unpacked)]
    scores = {}
    for name, photo in load_photos(GATE_PHOTOS).items():
        x = preprocess(
            [torch.from_numpy(photo).permute(2, 0, 1)], config, 1024, torch.device("cpu")
        )
        with torch.inference_mode():
            a, b = (m(x) for m in models)
        scores[name] = mask_iou(a, b)
        print(f"{name}: IoU {scores[name]:.4f}", flush=True)
    values = list(scores.values())
    print(f"mean IoU {sum(values) / len(values):.4f}, worst {min(values):.4f} ({MEDIUM.filename})")


def main(argv: list[str]) -> int:
    commands = {"pack": pack, "unpack": unpack, "compare": compare}
    if len(argv) != 3 or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    commands[argv[0]](Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
