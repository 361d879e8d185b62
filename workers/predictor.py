"""The segmenter: batches images into the model's input and masks back to each image's size."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from workers.engines.base import Engine, EngineContext
from workers.engines.keys import model_hash
from workers.engines.select import reduced_input_refusal, select_engine
from workers.models import build_model, model_config
from workers.models.config import ModelConfig
from workers.settings import WorkerSettings

log = logging.getLogger("cutout.engines")


def preprocess(
    images: Sequence[torch.Tensor], config: ModelConfig, size: int, device: torch.device
) -> torch.Tensor:
    """3×H×W uint8 images → B×3×size×size input normalised per ``config`` on ``device``."""
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)
    resized = [
        F.interpolate(
            img.to(device, non_blocking=True).unsqueeze(0).float(),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        for img in images
    ]
    return (torch.cat(resized) / 255.0 - mean) / std


class Segmenter:
    """Runs one engine over batches of images.

    ``images`` are 3×H×W uint8 tensors of any size; masks come back as 1×H×W float32 in [0, 1]
    at each image's own size (or at the sizes asked for).

    ``reduced_input`` is a smaller model input the quality gate allowed for this engine (see
    ``workers.engines.select.reduced_input_refusal``), used under load; None when there is none.
    """

    def __init__(
        self,
        engine: Engine,
        config: ModelConfig,
        cold_start_seconds: dict[str, float] | None = None,
        reduced_input: int | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.device = engine.device
        self.reduced_input = reduced_input
        # import / weight_load / engine_build / warm_up / total: kept for metrics exporters.
        self.cold_start_seconds: dict[str, float] = dict(cold_start_seconds or {})

    def preprocess(
        self, images: Sequence[torch.Tensor], input_size: int | None = None
    ) -> torch.Tensor:
        """B×3×S×S normalised model input (bilinear resize to ``input_size``, by default the
        model's)."""
        size = input_size or self.config.input_size
        return preprocess(images, self.config, size, self.device)

    def warm_up(self) -> dict[str, float]:
        """Run one batch at each shape the engine prepared (captured or compiled), and at the
        reduced input if there is one, so the first job pays for no lazy initialisation; adds
        ``warm_up`` and ``total`` to the cold start."""
        start = time.perf_counter()
        shapes = [(n, self.config.input_size) for n in self.engine.warm_batch_sizes]
        if self.reduced_input is not None:
            shapes.append((1, self.reduced_input))
        for n, size in shapes:
            self.engine.predict(torch.zeros(n, 3, size, size, device=self.device))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.cold_start_seconds["warm_up"] = time.perf_counter() - start
        self.cold_start_seconds["total"] = sum(
            v for k, v in self.cold_start_seconds.items() if k != "total"
        )
        return self.cold_start_seconds

    def predict(
        self,
        images: Sequence[torch.Tensor],
        sizes: Sequence[tuple[int, int]] | None = None,
        input_size: int | None = None,
    ) -> list[torch.Tensor]:
        """A mask per image, at ``sizes`` ((H, W) each; by default each image's own), from the
        model run at ``input_size`` (by default the model's)."""
        masks = self.engine.predict(self.preprocess(images, input_size))
        sizes = sizes or [(img.shape[1], img.shape[2]) for img in images]
        return [
            F.interpolate(m.unsqueeze(0), size=size, mode="bilinear", align_corners=False)
            .squeeze(0)
            .clamp_(0, 1)
            for m, size in zip(masks, sizes, strict=True)
        ]


def engine_context(settings: WorkerSettings, input_size: int | None = None) -> EngineContext:
    """What engines are built from; the weights themselves load only when an engine asks."""
    checkpoint = settings.checkpoint_path()
    if not checkpoint.is_file():
        raise FileNotFoundError(
            f"model weights not found at {checkpoint}; run `python -m workers.models fetch`"
        )
    return EngineContext(
        device=torch.device(settings.torch_device()),
        config=model_config(settings.model),
        model_hash=model_hash(checkpoint),
        artefact_dir=settings.model_dir,
        load_model=lambda: build_model(settings.model, checkpoint),
        batch_sizes=settings.engine_batch_sizes(),
        input_size=input_size,
    )


def load_segmenter(settings: WorkerSettings, engine: str | None = None) -> tuple[Segmenter, float]:
    """Build the engine once (``engine`` overrides ``settings.engine``); returns the segmenter
    and the seconds that took.

    Raises ``FileNotFoundError`` without weights and ``EngineUnavailable`` when the engine asked
    for cannot run here: both are start-up errors. The segmenter's ``cold_start_seconds`` holds
    ``import`` (process start until here: interpreter, Celery, torch), ``weight_load`` and
    ``engine_build`` (export, compile or cache load included); ``warm_up`` adds the rest.
    """
    imported = process_age_seconds()
    start = time.perf_counter()
    ctx = engine_context(settings)
    built = select_engine(engine or settings.engine, ctx)
    build = time.perf_counter() - start
    cold = {"weight_load": ctx.weight_load_seconds, "engine_build": build - ctx.weight_load_seconds}
    if imported is not None:
        cold = {"import": imported, **cold}
    reduced = None
    if settings.adaptive_queue_depth > 0:
        refusal = reduced_input_refusal(built, ctx, settings.reduced_input)
        if refusal is None:
            reduced = settings.reduced_input
        else:
            log.warning("adaptive quality is off: %s", refusal)
    return Segmenter(built, ctx.config, cold, reduced), build


def process_age_seconds() -> float | None:
    """Seconds since this process started (Linux ``/proc``); None where that is unknown."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime, in ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started)
