"""fp32 eager PyTorch: the reference every other engine is held to."""

from __future__ import annotations

import torch

from workers.engines.base import EngineContext


class EagerEngine:
    name = "eager"
    warm_batch_sizes: tuple[int, ...] = (1,)

    def __init__(self, ctx: EngineContext) -> None:
        self.device = ctx.device
        self.model = ctx.model.to(ctx.device)

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.device, torch.float32)).float()
