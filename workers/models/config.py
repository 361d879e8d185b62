"""Per-model preprocessing constants: the one place input size, mean and std live."""

from __future__ import annotations

from dataclasses import dataclass

# The ImageNet statistics that InSPyReNet's backbones and the student are normalised with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    family: str
    variant: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # False where activations overflow fp16's range (InSPyReNet's SICA sums over base-size²
    # positions): CUDA engines then run bf16, or refuse where the device has none.
    fp16_safe: bool = True

    @property
    def model_id(self) -> str:
        return f"{self.family}-{self.variant}"
