"""Segmentation models: one module per family, builders per variant, and a registry.

``build_model(name, checkpoint)`` refuses unknown names. Models know tensors only: no files
other than their checkpoint, no images, no devices beyond where their weights live.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from workers.models.config import ModelConfig
from workers.models.isnet import ISNET_CONFIG, ISNet, checkpoint_filter_fn


class CheckpointError(ValueError):
    """A checkpoint does not fit the model it is loaded into."""


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Memory-map a safetensors file (no copy until a tensor is touched)."""
    from safetensors.torch import load_file

    return load_file(str(path))


def _assign_weights(
    model_cls: Callable[[], nn.Module], state: dict[str, torch.Tensor]
) -> nn.Module:
    # Build on the meta device and adopt the (memory-mapped) tensors: no random init, no copy.
    with torch.device("meta"):
        model = model_cls()
    expected = set(model.state_dict().keys())
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint does not match {model_cls.__name__}: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )
    for key, param in model.state_dict().items():
        if tuple(param.shape) != tuple(state[key].shape):
            raise CheckpointError(
                f"{key}: checkpoint shape {tuple(state[key].shape)} != model {tuple(param.shape)}"
            )
    model.load_state_dict(state, assign=True, strict=True)
    return model.eval()


def build_isnet_general_use(checkpoint: Path | None = None) -> nn.Module:
    """IS-Net (general use) in fp32; random weights when ``checkpoint`` is None."""
    if checkpoint is None:
        return ISNet().eval()
    return _assign_weights(ISNet, checkpoint_filter_fn(load_safetensors(checkpoint)))


MODEL_REGISTRY: dict[str, tuple[Callable[[Path | None], nn.Module], ModelConfig]] = {
    ISNET_CONFIG.model_id: (build_isnet_general_use, ISNET_CONFIG),
}


def model_config(name: str) -> ModelConfig:
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_REGISTRY))}")
    return MODEL_REGISTRY[name][1]


def build_model(name: str, checkpoint: Path | None = None) -> nn.Module:
    """Build a registered model; unknown names raise ``KeyError`` listing the known ones."""
    model_config(name)
    return MODEL_REGISTRY[name][0](checkpoint)
