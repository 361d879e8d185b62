"""Ways of running a segmentation model, all behind one interface.

``Engine.predict(batch)`` takes a B×3×H×W float32 tensor, normalised per the model's config,
on the engine's device, and returns B×1×H×W mask probabilities (float32, in [0, 1]).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class Engine(Protocol):
    name: str
    device: torch.device

    def predict(self, batch: torch.Tensor) -> torch.Tensor: ...


class EagerEngine:
    """fp32 eager PyTorch: the reference every other engine is held to."""

    name = "eager"

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device = device
        self.model = model.to(device).eval()

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device, torch.float32)).float()


ENGINES = {"eager": EagerEngine}


def build_engine(name: str, model: nn.Module, device: torch.device) -> Engine:
    if name not in ENGINES:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(sorted(ENGINES))}")
    return ENGINES[name](model, device)
