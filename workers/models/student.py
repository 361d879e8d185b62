"""The cutout student: a small segmenter distilled from IS-Net (``training/``).

A MobileNetV2-style encoder (inverted-residual blocks: 1x1 expansion, 3x3 depthwise, linear
1x1 projection, Sandler et al., CVPR 2018) and a light FPN-style decoder of depthwise-separable
convs. Every decoder level (1/32 .. 1/2) has its own 1x1 mask head: training supervises all of
them (deep supervision, as IS-Net and U²-Net do); inference computes only the finest, upsampled
to the input size. Trained from scratch: no pretrained backbone can be downloaded here.

Variants are rows of ``STUDENT_VARIANTS``; the input size lives in each row's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workers.models.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig

# (expansion t, output channels c, repeats n, first stride s) per encoder stage, MobileNetV2's
# table; the stages end at strides 2, 4, 8, 16 and 32, where the decoder taps them.
ENCODER_STAGES: tuple[tuple[tuple[int, int, int, int], ...], ...] = (
    ((1, 16, 1, 1),),
    ((6, 24, 2, 2),),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)


@dataclass(frozen=True)
class StudentVariant:
    """``width``: multiplies every encoder channel count (rounded to 8); ``decoder``: the
    decoder's channels at strides 2, 4, 8, 16, 32."""

    input_size: int
    width: float = 1.0
    decoder: tuple[int, int, int, int, int] = (32, 64, 96, 128, 256)

    def config(self, variant: str) -> ModelConfig:
        return ModelConfig("cutout", variant, self.input_size, IMAGENET_MEAN, IMAGENET_STD)


STUDENT_VARIANTS = {
    "student": StudentVariant(input_size=384),
    # The same network at 256 px: 2.25x less compute than at 384, and what a CPU can train.
    "student-256": StudentVariant(input_size=256),
}


def _channels(c: int, width: float) -> int:
    return max(8, int(c * width + 4) // 8 * 8)


class ConvBNAct(nn.Sequential):
    def __init__(
        self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class InvertedResidual(nn.Module):
    """1x1 expansion (skipped when ``expand`` is 1), 3x3 depthwise at ``stride``, linear 1x1
    projection; the input is added back when the shape allows."""

    def __init__(self, cin: int, cout: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNAct(cin, hidden)]
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class SeparableConv(nn.Sequential):
    """3x3 depthwise then 1x1 pointwise, each with batch norm and ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            ConvBNAct(channels, channels, 3, groups=channels), ConvBNAct(channels, channels)
        )


class Fuse(nn.Module):
    """One decoder step: the coarser level, reduced to this level's channels and upsampled,
    plus this level's encoder features (1x1 lateral), mixed by a separable conv."""

    def __init__(self, coarse: int, skip: int, out: int) -> None:
        super().__init__()
        self.reduce = ConvBNAct(coarse, out)
        self.lateral = ConvBNAct(skip, out)
        self.mix = SeparableConv(out)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(
            self.reduce(coarse), size=skip.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.mix(self.lateral(skip) + up)


class Student(nn.Module):
    """``forward(x)``: x is B×3×H×W, normalised per the variant's config (H, W multiples of 32
    keep every level aligned); returns B×1×H×W mask probabilities in [0, 1].

    ``side_logits(x)``: the five heads' logits, finest (1/2) first, for deep supervision.
    """

    def __init__(self, variant: StudentVariant) -> None:
        super().__init__()
        stem = _channels(32, variant.width)
        self.stem = ConvBNAct(3, stem, 3, 2)
        stages, taps, cin = [], [], stem
        for stage in ENCODER_STAGES:
            blocks: list[nn.Module] = []
            for expand, c, repeats, stride in stage:
                cout = _channels(c, variant.width)
                for i in range(repeats):
                    blocks.append(InvertedResidual(cin, cout, expand, stride if i == 0 else 1))
                    cin = cout
            stages.append(nn.Sequential(*blocks))
            taps.append(cin)
        self.encoder = nn.ModuleList(stages)
        top = variant.decoder[-1]
        self.context = ConvBNAct(taps[-1], top)
        # Image-level context added at every position; no batch norm on a 1x1 map (its batch
        # statistics would be those of a handful of numbers).
        self.global_context = nn.Sequential(nn.Conv2d(taps[-1], top, 1), nn.ReLU(inplace=True))
        self.top_mix = SeparableConv(top)
        self.fuse = nn.ModuleList(
            Fuse(variant.decoder[i + 1], taps[i], variant.decoder[i]) for i in range(4)
        )
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in variant.decoder)

    def _decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features at strides 2, 4, 8, 16, 32."""
        feats = []
        h = self.stem(x)
        for stage in self.encoder:
            h = stage(h)
            feats.append(h)
        top = feats[-1]
        pooled = self.global_context(top.mean((2, 3), keepdim=True))
        levels = [self.top_mix(self.context(top) + pooled)]
        for i in range(3, -1, -1):
            levels.insert(0, self.fuse[i](levels[0], feats[i]))
        return levels

    def side_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [head(level) for head, level in zip(self.heads, self._decode(x), strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        finest = self._decode(x)[0]
        logits = F.interpolate(
            self.heads[0](finest), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return torch.sigmoid(logits)


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's tensors as float32, from a shipped (fp16) file or a training checkpoint
    (whose model tensors are prefixed ``model.`` beside the optimizer's ``optim.``)."""
    if any(key.startswith("model.") for key in state_dict):
        state_dict = {
            key.removeprefix("model."): t
            for key, t in state_dict.items()
            if key.startswith("model.")
        }
    return {key: t.float() if t.is_floating_point() else t for key, t in state_dict.items()}
