"""Training checkpoints and the shipped student, both safetensors.

A training checkpoint holds the model (``model.*``), AdamW's moments (``optim.N.exp_avg``,
``optim.N.exp_avg_sq``, N the parameter's index) and, in the metadata, the step, the run's
settings and its best held-out score, so a killed run resumes where it stopped. It loads
as it is into the registered model (``CUTOUT_CHECKPOINT``): the model's filter keeps ``model.*``.

The shipped student is the model alone in fp16 (half the bytes; the engines cast to their own
precision), named by its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

STUDENT_FORMAT = "cutout-student-v1"
TRAINING_FORMAT = "cutout-student-training-v1"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, meta: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.safetensors")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(partial), meta)
    os.replace(partial, path)


def save_training(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """``state``: JSON-able run state (step, settings, best score) kept in the metadata."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        for name, value in optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.reshape(-1) if value.ndim == 0 else value
    meta = {"format": TRAINING_FORMAT, "state": json.dumps(state)}
    _atomic_save(tensors, path, meta)


def load_training(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore ``model`` and ``optimizer`` from ``path``; returns the saved run state."""
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != TRAINING_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint")
    tensors = load_file(str(path))
    model.load_state_dict(
        {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, index, name = key.split(".", 2)
        param = params[int(index)]
        slot = optimizer.state[param]
        slot[name] = value.reshape(()) if name == "step" else value.to(param.device)
    state: dict[str, Any] = json.loads(meta["state"])
    return state


def export_student(model: nn.Module, path: Path, meta: dict[str, str]) -> str:
    """The model alone in fp16 (integer buffers as they are); returns the file's sha256."""
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    _atomic_save(tensors, path, {"format": STUDENT_FORMAT, **meta})
    return hashlib.sha256(path.read_bytes()).hexdigest()
