"""What cached artefacts and gate reports are keyed by: weights, device, library versions."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import torch


def model_hash(checkpoint: Path) -> str:
    """sha256 of the weights file, remembered beside it (keyed by size and mtime) so a
    restarted worker does not read 170 MB again just to name its caches."""
    stat = checkpoint.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    sidecar = checkpoint.with_name(checkpoint.name + ".sha256.json")
    try:
        saved = json.loads(sidecar.read_text())
        if saved.get("stamp") == stamp:
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with checkpoint.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    try:
        sidecar.write_text(json.dumps({"stamp": stamp, "sha256": value}))
    except OSError:  # a read-only model dir only costs the hash next time
        pass
    return value


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A name that tells apart machines whose speeds differ: the GPU, or CPU model and threads."""
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return f"cpu {_cpu_model()} x{torch.get_num_threads()}"


def artefact_key(
    *,
    model_hash: str,
    precision: str,
    batch_size: int,
    input_size: int,
    device: str,
    library: str,
) -> str:
    """A file-name-safe key: change any part (weights, precision, batch shape, input size,
    device, compiler version) and the artefact is built anew instead of loaded."""
    parts = [model_hash, precision, str(batch_size), str(input_size), device, library]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return f"{model_hash[:12]}-{precision}-b{batch_size}-{input_size}px-{digest}"
