"""Segmentation models: one module per family, builders per variant, and a registry.

``build_model(name, checkpoint)`` refuses unknown names. Models know tensors only: no files
other than their checkpoint, no images, no devices beyond where their weights live.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from torch import nn

from workers.models import inspyrenet, student
from workers.models.checkpoint import (
    CheckpointError,
    assign_weights,
    load_safetensors,
    read_state_dict,
)
from workers.models.config import ModelConfig
from workers.models.isnet import ISNET_CONFIG, ISNet, checkpoint_filter_fn

__all__ = ["CheckpointError", "MODEL_REGISTRY", "build_model", "load_safetensors", "model_config"]


def build_isnet_general_use(checkpoint: Path | None = None) -> nn.Module:
    """IS-Net (general use) in fp32; random weights when ``checkpoint`` is None."""
    if checkpoint is None:
        return ISNet().eval()
    return assign_weights(ISNet, checkpoint_filter_fn(load_safetensors(checkpoint)))


def build_inspyrenet(variant: str, checkpoint: Path | None = None) -> nn.Module:
    """InSPyReNet ``variant`` (a row of ``INSPYRENET_VARIANTS``) in fp32 from a ``.pth`` or
    ``.safetensors`` checkpoint; random weights when ``checkpoint`` is None."""
    row = inspyrenet.INSPYRENET_VARIANTS[variant]
    build = partial(inspyrenet.InSPyReNet, row.backbone, row.base_size)
    if checkpoint is None:
        return build().eval()
    return assign_weights(build, inspyrenet.checkpoint_filter_fn(read_state_dict(checkpoint)))


def build_student(variant: str, checkpoint: Path | None = None) -> nn.Module:
    """The distilled student ``variant`` (a row of ``STUDENT_VARIANTS``) in fp32 from a
    safetensors checkpoint (shipped fp16 or a training checkpoint); random weights when None."""
    build = partial(student.Student, student.STUDENT_VARIANTS[variant])
    if checkpoint is None:
        return build().eval()
    return assign_weights(build, student.checkpoint_filter_fn(read_state_dict(checkpoint)))


MODEL_REGISTRY: dict[str, tuple[Callable[[Path | None], nn.Module], ModelConfig]] = {
    ISNET_CONFIG.model_id: (build_isnet_general_use, ISNET_CONFIG),
    **{
        f"inspyrenet-{name}": (partial(build_inspyrenet, name), row.config(name))
        for name, row in inspyrenet.INSPYRENET_VARIANTS.items()
    },
    **{
        f"cutout-{name}": (partial(build_student, name), row.config(name))
        for name, row in student.STUDENT_VARIANTS.items()
    },
}


def model_config(name: str) -> ModelConfig:
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_REGISTRY))}")
    return MODEL_REGISTRY[name][1]


def build_model(name: str, checkpoint: Path | None = None) -> nn.Module:
    """Build a registered model; unknown names raise ``KeyError`` listing the known ones."""
    model_config(name)
    return MODEL_REGISTRY[name][0](checkpoint)
