"""The distilled student as a registered model: its shape, its size, its checkpoints, and one
training step that lowers the distillation loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.checkpoint import export_student, load_training, save_training
from training.loss import distillation_loss, edge_weights
from workers.models import MODEL_REGISTRY, build_model, model_config
from workers.models.student import STUDENT_VARIANTS, Student

STUDENTS = [f"cutout-{name}" for name in STUDENT_VARIANTS]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", STUDENTS)
def test_each_variant_is_registered_with_its_input_size(name: str) -> None:
    assert name in MODEL_REGISTRY
    config = model_config(name)
    assert config.input_size == STUDENT_VARIANTS[name.removeprefix("cutout-")].input_size
    assert config.model_id == name


@pytest.mark.parametrize("name", STUDENTS)
def test_the_student_has_two_to_six_million_parameters(name: str) -> None:
    params = sum(p.numel() for p in build_model(name).parameters())
    assert 2e6 <= params <= 6e6, params


def test_masks_at_the_input_size_and_five_side_outputs() -> None:
    model = build_model("cutout-student").eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        mask = model(x)
        sides = model.side_logits(x)
    assert mask.shape == (2, 1, 96, 128)
    assert 0 <= mask.min() and mask.max() <= 1
    assert [s.shape[-2:] for s in sides] == [(96 // s, 128 // s) for s in (2, 4, 8, 16, 32)]


def test_an_image_mask_does_not_depend_on_its_batch_mates() -> None:
    model = build_model("cutout-student").eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[1:2], model(x[1:2]), atol=1e-5, rtol=1e-4)


def _train_steps(model: Student, x: torch.Tensor, target: torch.Tensor, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss, _ = distillation_loss(model.side_logits(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    disc = torch.sigmoid((0.5 - (xx**2 + yy**2).sqrt()) * 20)  # a soft disc, like a teacher's
    return x, torch.stack([disc, 1 - disc])[:, None]


def test_training_steps_lower_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = build_model("cutout-student").train()
    x, target = _tiny_batch()
    losses = _train_steps(model, x, target, 12)
    assert losses[-1] < 0.7 * losses[0], losses


def test_the_loss_weighs_edges_and_takes_soft_targets() -> None:
    target = torch.zeros(1, 1, 64, 64)
    target[..., 16:48, 16:48] = 1
    weights = edge_weights(target)
    assert weights[0, 0, 32, 32] == pytest.approx(1, abs=0.05)  # deep inside
    assert weights[0, 0, 16, 16] > 3  # on the boundary
    # The loss is lowest where the prediction equals a soft target, not at its rounding.
    soft = torch.full((1, 1, 64, 64), 0.3)
    logit = torch.logit(soft)
    sides = [logit[..., :: 2**i, :: 2**i] for i in range(1, 6)]
    rounded = [torch.full_like(s, -8.0) for s in sides]
    assert distillation_loss(sides, soft)[0] < distillation_loss(rounded, soft)[0]


def test_a_training_checkpoint_loads_into_the_registered_model_and_resumes(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = build_model("cutout-student").train()
    x, target = _tiny_batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(2):
        loss, _ = distillation_loss(model.side_logits(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path / "last.safetensors"
    save_training(path, model, optimizer, {"step": 2})

    served = build_model("cutout-student", path)  # as a worker loads CUTOUT_CHECKPOINT
    model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(served(x), model(x), atol=0, rtol=0)

    again = build_model("cutout-student").train()
    optimizer2 = torch.optim.AdamW(again.parameters(), lr=3e-3)
    assert load_training(path, again, optimizer2) == {"step": 2}
    for p, q in zip(
        optimizer.param_groups[0]["params"], optimizer2.param_groups[0]["params"], strict=True
    ):
        torch.testing.assert_close(optimizer.state[p]["exp_avg"], optimizer2.state[q]["exp_avg"])
        assert float(optimizer2.state[q]["step"]) == 2


def test_the_shipped_fp16_file_loads_and_is_named_by_its_sha256(tmp_path: Path) -> None:
    import hashlib

    torch.manual_seed(0)
    model = build_model("cutout-student").eval()
    path = tmp_path / "cutout-student.safetensors"
    digest = export_student(model, path, {"model": "cutout-student"})
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_size < 5.5e6  # ~2.2 M parameters at 2 bytes
    served = build_model("cutout-student", path)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        torch.testing.assert_close(served(x), model(x), atol=2e-3, rtol=0)
