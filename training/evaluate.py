"""The student against the teacher's targets (the issue's, from the seed's plan):

- on held-out photos, mean IoU (masks at 0.5) against the teacher's masks ≥ 0.95;
- on held-out composites, mean IoU against the true alpha no worse than 0.95× the teacher's.

A student that misses either is not shipped as a default. ``evaluate_pack`` scores on a pack's
held-out items at the pack's side (what a GPU box without the photos can do);
``python -m training.evaluate`` scores full-size photos through the worker's own segmenter
(each photo resized to the student's input, the mask resized back), at the size the teacher's
labels are stored.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from workers.engines.gate import mask_iou
from workers.models import model_config

MIN_IOU_VS_TEACHER = 0.95
MIN_GT_RATIO = 0.95  # student's IoU vs truth / teacher's, on composites


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU at 0.5 of two uint8 masks (0..255) of one size."""
    return mask_iou(torch.tensor(a) / 255, torch.tensor(b) / 255)


def verdict(
    student_vs_teacher: Sequence[float],
    student_vs_truth: Sequence[float],
    teacher_vs_truth: Sequence[float],
) -> dict[str, Any]:
    """The targets' figures and whether both are met."""
    vs_teacher = statistics.fmean(student_vs_teacher)
    truth = statistics.fmean(student_vs_truth) if student_vs_truth else float("nan")
    teacher_truth = statistics.fmean(teacher_vs_truth) if teacher_vs_truth else float("nan")
    ratio = truth / teacher_truth if teacher_vs_truth else float("nan")
    return {
        "photos": len(student_vs_teacher),
        "iou_vs_teacher": round(vs_teacher, 4),
        "iou_vs_teacher_worst": round(min(student_vs_teacher), 4),
        "composites": len(student_vs_truth),
        "student_iou_vs_truth": round(truth, 4),
        "teacher_iou_vs_truth": round(teacher_truth, 4),
        "truth_ratio": round(ratio, 4),
        "passed": bool(vs_teacher >= MIN_IOU_VS_TEACHER and ratio >= MIN_GT_RATIO),
        "targets": {"iou_vs_teacher": MIN_IOU_VS_TEACHER, "truth_ratio": MIN_GT_RATIO},
    }


def evaluate_pack(
    model: nn.Module, pack: Any, model_name: str, size: int, device: torch.device
) -> dict[str, Any]:
    """Score on ``pack``'s held-out items: photos against the teacher's masks; composites (those
    with a true alpha) against the truth, next to the teacher's masks against the truth."""
    from training.train import normalise

    config = model_config(model_name)
    model = model.to(device).eval()
    vs_teacher, student_truth, teacher_truth = [], [], []
    with torch.inference_mode():
        for j in pack.split(True):
            photo = torch.from_numpy(pack.images[j]).permute(2, 0, 1)[None].to(device)
            x = F.interpolate(photo.float(), size=(size, size), mode="bilinear", antialias=True)
            pred = F.interpolate(model(normalise(x, config)).float(), size=pack.masks[j].shape)
            mask = (pred[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
            if j in pack.alphas:
                student_truth.append(_iou(mask, pack.alphas[j]))
                teacher_truth.append(_iou(pack.masks[j], pack.alphas[j]))
            else:
                vs_teacher.append(_iou(mask, pack.masks[j]))
    return {"at": f"pack side {pack.side}", **verdict(vs_teacher, student_truth, teacher_truth)}


def evaluate_photos(
    student: Any, labels: Any, photos: Sequence[Any], composites: Sequence[Any]
) -> dict[str, Any]:
    """``student``: a ``workers.predictor.Segmenter``; ``labels``: ``TeacherLabels``."""
    from PIL import Image

    from training.labels import segmenter_teacher

    run = segmenter_teacher(student)
    vs_teacher = [
        _iou(run([p.read()])[0], mask)
        for p, mask in zip(photos, labels.labels(photos), strict=True)
    ]
    student_truth, teacher_truth = [], []
    for p, teacher in zip(composites, labels.labels(composites), strict=True):
        truth = np.asarray(Image.open(p.alpha_path).convert("L"))
        student_truth.append(_iou(run([p.read()])[0], truth))
        teacher_truth.append(_iou(teacher, truth))
    return {
        "at": "label size (photo ≤ 1024 px)",
        **verdict(vs_teacher, student_truth, teacher_truth),
    }


def main(argv: list[str] | None = None) -> int:
    from training.distill import teacher_labels
    from training.photos import list_photos
    from workers.predictor import load_segmenter
    from workers.settings import WorkerSettings

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--model", default="cutout-student")
    parser.add_argument("--engine", default="eager", help="the student's engine")
    parser.add_argument("--photos", type=Path, required=True, help="held-out photos")
    parser.add_argument("--composites", type=Path, help="NAME.jpg + NAME.alpha.png")
    parser.add_argument("--labels", type=Path, required=True, help="teacher label cache")
    parser.add_argument("--teacher-engine", default="half")
    args = parser.parse_args(argv)
    settings = replace(
        WorkerSettings.from_env(),
        model=args.model,
        checkpoint=args.checkpoint,
        adaptive_queue_depth=0,
    )
    student, _ = load_segmenter(settings, args.engine)
    labels = teacher_labels(args.labels, args.teacher_engine, 1)
    composites = list_photos(args.composites) if args.composites else []
    report = evaluate_photos(student, labels, list_photos(args.photos), composites)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
