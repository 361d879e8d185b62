"""What every engine shares: the interface, what a builder is given, and the refusal."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from workers.models.config import ModelConfig


class EngineUnavailable(RuntimeError):
    """An engine cannot run here; the message says why and what would make it run."""


def cuda_half_dtype(engine: str, config: ModelConfig) -> torch.dtype:
    """fp16 on CUDA, or bf16 for a model whose activations overflow fp16 (refused without it)."""
    if config.fp16_safe:
        return torch.float16
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    raise EngineUnavailable(
        f"engine {engine!r}: {config.model_id} overflows fp16 and this GPU has no bf16; use 'eager'"
    )


class Engine(Protocol):
    """``predict(batch)``: B×3×H×W float32, normalised per the model's config, on ``device``;
    returns B×1×H×W float32 mask probabilities in [0, 1] on ``device``.

    ``warm_batch_sizes`` are the batch shapes the engine prepared (captured or compiled); the
    worker runs one batch of each before it takes jobs.
    """

    name: str
    device: torch.device
    warm_batch_sizes: tuple[int, ...]

    def predict(self, batch: torch.Tensor) -> torch.Tensor: ...


@dataclass
class EngineContext:
    """Everything a builder may need. The fp32 model is loaded on first use of ``model``, so an
    engine that runs from a cached artefact (ONNX, INT8) never pays for the torch weights.
    """

    device: torch.device
    config: ModelConfig
    model_hash: str  # the weights' content hash: part of every artefact's cache key
    artefact_dir: Path  # where exported, calibrated and compiled artefacts are cached
    load_model: Callable[[], nn.Module]
    batch_sizes: tuple[int, ...] = (1,)  # batch shapes the batcher produces (see settings)
    input_size: int | None = None  # defaults to the model's; the CI gate runs smaller
    weight_load_seconds: float = field(default=0.0, init=False)
    _model: nn.Module | None = field(default=None, init=False, repr=False)

    @property
    def size(self) -> int:
        return self.input_size or self.config.input_size

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            start = time.perf_counter()
            self._model = self.load_model().eval()
            self.weight_load_seconds = time.perf_counter() - start
        return self._model


def run_in_shapes(
    batch: torch.Tensor, sizes: tuple[int, ...], run: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Run ``batch`` through a function prepared for fixed batch ``sizes`` only.

    Splits the batch into chunks of at most the largest size and pads each chunk (with its
    last image) up to the smallest prepared size that holds it; padding rows are dropped.
    """
    largest = max(sizes)
    outputs = []
    for chunk in batch.split(largest):
        n = chunk.shape[0]
        size = min(s for s in sizes if s >= n)
        if size > n:
            chunk = torch.cat([chunk, chunk[-1:].expand(size - n, *chunk.shape[1:])])
        outputs.append(run(chunk)[:n])
    return torch.cat(outputs)
