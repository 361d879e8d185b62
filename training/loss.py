"""The distillation loss: the student's side outputs against the teacher's soft mask.

Per side output, F3Net's structure loss (Wei et al., AAAI 2020) with the teacher's soft mask as
the target:

- a soft-mask binary cross-entropy: the target is the teacher's probability, not a 0/1 mask, so
  the student also learns where the teacher is unsure (hair, fur, motion blur);
- a soft IoU term on the probabilities: the quantity the gate measures, and indifferent to how
  much of the frame the subject fills (a per-pixel loss alone lets a small subject vanish);
- both weighted towards edges: weight 1 + 5·|avgpool₃₁(t) − t| is about 1 inside flat regions
  and up to 6 along the teacher's boundaries, where the IoU at 0.5 is won or lost.

Deep supervision: every side output is scored against the target brought to its own size
(area-averaged), the finest with weight 1 and the four coarser ones with 0.5 each.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SIDE_WEIGHTS = (1.0, 0.5, 0.5, 0.5, 0.5)
EDGE_KERNEL = 31  # at the training input size; scaled with each side's resolution
EDGE_GAIN = 5.0


def edge_weights(target: torch.Tensor) -> torch.Tensor:
    """B×1×H×W weights: 1 away from edges, up to 1 + ``EDGE_GAIN`` on them."""
    k = max(3, EDGE_KERNEL * target.shape[-1] // 384 | 1)  # an odd kernel
    local = F.avg_pool2d(target, k, stride=1, padding=k // 2, count_include_pad=False)
    return 1 + EDGE_GAIN * (local - target).abs()


def structure_loss(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Edge-weighted soft BCE and edge-weighted soft IoU of one side output (same size)."""
    logits = logits.float()
    weight = edge_weights(target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wbce = (weight * bce).sum((2, 3)) / weight.sum((2, 3))
    prob = torch.sigmoid(logits)
    inter = (prob * target * weight).sum((2, 3))
    union = ((prob + target) * weight).sum((2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return {"bce": wbce.mean(), "iou": wiou.mean()}


def distillation_loss(
    side_logits: Sequence[torch.Tensor], target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``side_logits``: finest first (``Student.side_logits``); ``target``: B×1×H×W soft mask
    in [0, 1] at the finest side's size or larger. Returns the loss and the finest side's
    parts (detached tensors: reading them waits for the device)."""
    total = target.new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for index, (weight, logits) in enumerate(zip(SIDE_WEIGHTS, side_logits, strict=True)):
        t = F.interpolate(target, size=logits.shape[-2:], mode="area")
        terms = structure_loss(logits, t)
        total = total + weight * (terms["bce"] + terms["iou"])
        if index == 0:  # the finest side: the one inference uses
            parts = {k: v.detach() for k, v in terms.items()}
    return total, parts
