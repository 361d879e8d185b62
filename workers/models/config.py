"""Per-model preprocessing constants: the one place input size, mean and std live."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    family: str
    variant: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def model_id(self) -> str:
        return f"{self.family}-{self.variant}"
