"""Reading checkpoint files and adopting their tensors into a model, with errors that name keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-map a safetensors file (no copy until a tensor is touched)."""
    from safetensors.torch import load_file

    return load_file(str(path))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch ``.pth``/``.pt`` file (tensors only).

    Torch files are opened with ``weights_only=True`` (no code from the file runs) and
    memory-mapped when saved in the zip format (torch ≥ 1.6; older files are read whole).
    A ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped.
    """
    try:
        if path.suffix == ".safetensors":
            return load_safetensors(path)
        obj = _torch_load(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated, not a checkpoint, or pickled code
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or wrong format?): {exc}"
        ) from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    return obj


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap can only be used" not in str(exc):  # torch's word for a pre-zip file
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def assign_weights(build: Callable[[], nn.Module], state: dict[str, torch.Tensor]) -> nn.Module:
    """Build the model on the meta device and adopt ``state``'s tensors: no random init, no copy.

    Missing or unexpected keys and wrong shapes raise ``CheckpointError`` naming them.
    """
    with torch.device("meta"):
        model = build()
    name = type(model).__name__
    expected = model.state_dict()
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not match {name}: {len(missing)} missing "
            f"{sorted(missing)[:8]}, {len(unexpected)} unexpected {sorted(unexpected)[:8]}"
        )
    for key, param in expected.items():
        if tuple(param.shape) != tuple(state[key].shape):
            raise CheckpointError(
                f"{name}: {key}: checkpoint shape {tuple(state[key].shape)} "
                f"!= model {tuple(param.shape)}"
            )
    model.load_state_dict(state, assign=True, strict=True)
    return model.eval()
