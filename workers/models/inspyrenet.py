"""InSPyReNet (Kim et al., ACCV 2022, "Revisiting Image Pyramid Structure for High Resolution
Salient Object Detection"), with the Swin-B or the Res2Net-50 backbone.

The model predicts a saliency map as a Laplacian pyramid: a coarse map at 1/8 of its input,
then three Laplacian residuals that rebuild it at 1/4, 1/2 and full size. At its base size it
runs once. Given a larger input it runs twice, on the input resized to the base size (the
low-resolution pyramid) and on the input itself (the high-resolution one), and blends them: the
coarse map comes from the low-resolution result and each finer level keeps the high-resolution
Laplacian only near the object's boundary. The branch depends on the input's shape alone, so a
fixed input size gives one static graph (torch.export, torch.compile, TensorRT).

Variants are rows of ``INSPYRENET_VARIANTS``; checkpoints of the ``transparent-background``
package and of the InSPyReNet repository go through ``checkpoint_filter_fn``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workers.models.backbones.res2net import Res2Net
from workers.models.backbones.swin import SwinTransformer
from workers.models.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from workers.models.inspyrenet_blocks import SICA, PAADecoder, PAAEncoder
from workers.models.pyramid import LaplacianPyramid, Transition
from workers.models.resize import resize_antialiased

BACKBONES = {"swinb": SwinTransformer, "res2net50": Res2Net}


@dataclass(frozen=True)
class InSPyReNetVariant:
    """``base_size``: the size the model was trained at (it shapes SICA, so it is part of the
    architecture). ``input_size`` above it turns on pyramid blending."""

    backbone: str
    base_size: int
    input_size: int

    def config(self, variant: str) -> ModelConfig:
        return ModelConfig(
            "inspyrenet",
            variant,
            self.input_size,
            IMAGENET_MEAN,
            IMAGENET_STD,
            fp16_safe=False,  # SICA's attention context reaches ~1e6: inf in fp16
        )


INSPYRENET_VARIANTS = {
    # transparent-background's ckpt_base.pth (and the repository's Plus_Ultra latest.pth).
    "swinb": InSPyReNetVariant("swinb", base_size=1024, input_size=1024),
    # transparent-background's ckpt_fast.pth (and the repository's SwinB latest.pth, DUTS-TR).
    "swinb-fast": InSPyReNetVariant("swinb", base_size=384, input_size=384),
    # The same 384 checkpoints at 1280 through pyramid blending, as the paper runs them on
    # high-resolution benchmarks.
    "swinb-hr": InSPyReNetVariant("swinb", base_size=384, input_size=1280),
    # The repository's Res2Net50 latest.pth.
    "res2net50": InSPyReNetVariant("res2net50", base_size=384, input_size=384),
    "res2net50-hr": InSPyReNetVariant("res2net50", base_size=384, input_size=1280),
}


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@dataclass
class Pyramid:
    """One pass's saliency pyramid: 1/8 logits, three Laplacians (coarse to fine), the result."""

    coarse: torch.Tensor
    laplacians: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    logits: torch.Tensor


class InSPyReNet(nn.Module):
    """``forward(x)``: x is B×3×H×W, normalised with ImageNet mean/std; returns B×1×H×W saliency
    in [0, 1], min-max scaled per image. Inputs larger than the base size on both sides go
    through pyramid blending; others take one pass at their own size."""

    def __init__(self, backbone: str, base_size: int, depth: int = 64) -> None:
        super().__init__()
        self.base_size = base_size
        self.backbone = BACKBONES[backbone]()
        channels = self.backbone.channels
        for i, ch in enumerate(channels, start=1):
            self.add_module(f"context{i}", PAAEncoder(ch, depth))
        self.decoder = PAADecoder(depth * 3, depth)
        self.attention0 = SICA(depth, depth, base_size, lmap_in=True)
        self.attention1 = SICA(depth * 2, depth, base_size // 2, lmap_in=True)
        self.attention2 = SICA(depth * 2, depth, base_size // 4)
        self.image_pyramid = LaplacianPyramid(7, 1.0)
        self.transition0 = Transition(17)
        self.transition1 = Transition(9)
        self.transition2 = Transition(5)

    def pyramid(self, x: torch.Tensor) -> Pyramid:
        """One pass: the saliency pyramid of ``x`` at ``x``'s own size."""
        h, w = x.shape[-2:]
        feats = self.backbone(x)
        x1, x2, x3, x4, x5 = (getattr(self, f"context{i}")(f) for i, f in enumerate(feats, 1))
        f3, d3 = self.decoder([x3, x4, x5])  # 1/8

        f2, p2 = self.attention2(torch.cat([x2, _resize(f3, (h // 4, w // 4))], 1), d3)
        d2 = self.image_pyramid.reconstruct(d3, p2)  # 1/4
        f1, p1 = self.attention1(
            torch.cat([_resize(x1, (h // 2, w // 2)), _resize(f2, (h // 2, w // 2))], 1), d2, p2
        )
        d1 = self.image_pyramid.reconstruct(d2, p1)  # 1/2
        _, p0 = self.attention0(_resize(f1, (h, w)), d1, p1)
        d0 = self.image_pyramid.reconstruct(d1, p0)  # 1/1
        return Pyramid(d3, (p2, p1, p0), d0)

    def blend(self, low: Pyramid, high: Pyramid) -> torch.Tensor:
        """Low-resolution result as the coarse level; high-resolution Laplacians near boundaries."""
        d = _resize(low.logits, high.coarse.shape[-2:])
        transitions = (self.transition2, self.transition1, self.transition0)
        for transition, laplacian in zip(transitions, high.laplacians, strict=True):
            band = _resize(transition(d), laplacian.shape[-2:])
            d = self.image_pyramid.reconstruct(d, band * laplacian)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = (self.base_size, self.base_size)
        if min(x.shape[-2:]) <= self.base_size:  # one pass at the input's own size
            logits = self.pyramid(x).logits
        else:
            low = resize_antialiased(x, base)  # as PIL shrinks the reference's low-res input
            logits = self.blend(self.pyramid(low), self.pyramid(x))
        pred = torch.sigmoid(logits.float())
        # Per image, so that an image's mask never depends on its batch-mates (the reference
        # code scales by the whole batch's min and max; identical for a batch of one).
        low_, high_ = pred.amin((1, 2, 3), keepdim=True), pred.amax((1, 2, 3), keepdim=True)
        return (pred - low_) / (high_ - low_ + 1e-8)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate a published InSPyReNet state dict into this module's, as float32.

    Accepts transparent-background's ``ckpt_base.pth`` / ``ckpt_fast.pth`` and the InSPyReNet
    repository's ``latest.pth`` (saved from a bare or a ``DataParallel`` model). Drops what
    inference does not use or rebuilds itself: the Res2Net classifier head (``backbone.fc``) and
    Swin's ``relative_position_index`` (a function of the window size).
    """
    out = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("backbone.fc.") or key.endswith(".relative_position_index"):
            continue
        out[key] = tensor if key.endswith("num_batches_tracked") else tensor.float()
    return out
