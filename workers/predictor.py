"""The segmenter: batches images into the model's input and masks back to each image's size."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from workers.engines import Engine, build_engine
from workers.models import build_model, model_config
from workers.models.config import ModelConfig
from workers.settings import WorkerSettings


class Segmenter:
    """Runs one engine over batches of images.

    ``images`` are 3×H×W uint8 tensors of any size; masks come back as 1×H×W float32 in [0, 1]
    at each image's own size.
    """

    def __init__(self, engine: Engine, config: ModelConfig) -> None:
        self.engine = engine
        self.config = config
        self.device = engine.device
        self._mean = torch.tensor(config.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(config.std, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """B×3×S×S normalised model input (bilinear resize to the model's input size)."""
        size = self.config.input_size
        resized = [
            F.interpolate(
                img.to(self.device, non_blocking=True).unsqueeze(0).float(),
                size=(size, size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
            for img in images
        ]
        batch = torch.cat(resized) / 255.0
        return (batch - self._mean) / self._std

    def warm_up(self, batch_size: int = 1) -> None:
        """Run the engine once so the first job does not pay for lazy initialisation."""
        size = self.config.input_size
        self.engine.predict(torch.zeros(batch_size, 3, size, size, device=self.device))

    def predict(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        masks = self.engine.predict(self.preprocess(images))
        return [
            F.interpolate(m.unsqueeze(0), size=img.shape[1:], mode="bilinear", align_corners=False)
            .squeeze(0)
            .clamp_(0, 1)
            for m, img in zip(masks, images, strict=True)
        ]


def load_segmenter(settings: WorkerSettings, engine: str = "eager") -> tuple[Segmenter, float]:
    """Build the model and engine once; returns the segmenter and the seconds it took."""
    start = time.perf_counter()
    config = model_config(settings.model)
    checkpoint = settings.checkpoint_path()
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"model weights not found at {checkpoint}; run `python -m workers.models fetch`"
        )
    model = build_model(settings.model, checkpoint)
    segmenter = Segmenter(
        build_engine(engine, model, torch.device(settings.torch_device())), config
    )
    return segmenter, time.perf_counter() - start
