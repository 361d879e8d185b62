"""The distillation recipe's parts on real photos: the teacher label cache, the pack, the
augmentations, the resumable training loop, and (slow) the whole command on a folder."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.augment import PhonePhotoAugment
from training.labels import TeacherLabels
from training.pack import Pack, build_pack, label_pack, load_pack, save_pack
from training.photos import list_photos, split_holdout
from training.train import LAST, TrainSettings, train
from workers.photos import load_photo

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three real photos, one of them twice under another name (an upload sent again)."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("astronaut", "coffee"):
        Image.fromarray(load_photo(name)).save(photos / f"{name}.jpg", quality=90)
    Image.fromarray(load_photo("chelsea")).save(photos / "sub" / "chelsea.png")
    (photos / "again.jpg").write_bytes((photos / "coffee.jpg").read_bytes())
    (photos / "notes.txt").write_text("not a photo")
    return photos


class CountingTeacher:
    """A stand-in for IS-Net (which takes seconds a photo on this CPU): a mask from the photo's
    brightness, and a count of the photos it was shown."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.seen += len(images)
        return [(img.mean(2) > 110).astype(np.uint8) * 255 for img in images]


def test_the_teacher_labels_each_photo_once_and_the_cache_answers_after(
    folder: Path, tmp_path: Path
) -> None:
    photos = list_photos(folder)
    assert sorted(p.path.name for p in photos) == [
        "again.jpg",
        "astronaut.jpg",
        "chelsea.png",
        "coffee.jpg",
    ]
    teacher = CountingTeacher()
    labels = TeacherLabels(tmp_path / "labels", "stand-in", teacher, batch_size=2)
    first = labels.labels(photos)
    assert [m.shape for m in first] == [p.read().shape[:2] for p in photos]
    # again.jpg is coffee.jpg's twin: labelled once.
    assert teacher.seen == 3 and labels.runs == 3 and labels.hits == 1

    again = TeacherLabels(tmp_path / "labels", "stand-in", teacher)  # a second epoch, or run
    second = again.labels(photos)
    assert teacher.seen == 3, "the teacher ran again on a cached photo"
    assert again.hits == 4
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    # Keyed by content: the same bytes under another name share one label.
    named = {p.path.name: p for p in photos}
    assert labels.path(named["again.jpg"]) == labels.path(named["coffee.jpg"])
    # Another teacher never reads these labels.
    other = TeacherLabels(tmp_path / "labels", "other-teacher", CountingTeacher())
    other.labels(photos[:1])
    assert other.runs == 1


def test_the_holdout_split_follows_the_content(folder: Path) -> None:
    photos = list_photos(folder)
    kept, held = split_holdout(photos, 50)
    assert sorted(kept + held, key=lambda p: p.path) == photos
    twins = {p.path.name: p in held for p in photos}
    assert twins["again.jpg"] == twins["coffee.jpg"]
    assert split_holdout(photos, 0) == (photos, [])
    assert split_holdout(photos, 100) == ([], photos)


def _pack(side: int = 80, unlabelled: tuple[str, ...] = ()) -> Pack:
    items = []
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        rgb = load_photo(name)
        mask = (rgb.mean(2) > 110).astype(np.uint8) * 255
        alpha = mask if name == "rocket" else None
        items.append((name, rgb, None if name in unlabelled else mask, i >= 2, alpha))
    return build_pack(side, items, "stand-in")


def test_a_pack_round_trips_through_its_file(tmp_path: Path) -> None:
    pack = _pack()
    size = save_pack(pack, tmp_path / "pack.npz")
    back = load_pack(tmp_path / "pack.npz")
    assert size == (tmp_path / "pack.npz").stat().st_size
    assert back.names == pack.names and back.teacher == "stand-in"
    np.testing.assert_array_equal(back.holdout, [False, False, True, True])
    np.testing.assert_array_equal(back.masks, pack.masks)  # PNG: lossless
    assert np.abs(back.images.astype(int) - pack.images).mean() < 4  # JPEG at 90
    assert list(back.alphas) == [3]
    np.testing.assert_array_equal(back.alphas[3], pack.alphas[3])
    assert back.labelled.all()


def test_a_pack_can_carry_photos_for_a_teacher_elsewhere(tmp_path: Path) -> None:
    pack = _pack(unlabelled=("astronaut", "coffee"))
    save_pack(pack, tmp_path / "pack.npz")
    back = load_pack(tmp_path / "pack.npz")
    np.testing.assert_array_equal(back.labelled, [False, False, True, True])
    assert list(back.split(False)) == [] and list(back.split(True)) == [2, 3]  # none to train on
    teacher = CountingTeacher()
    assert label_pack(back, teacher, "gpu-teacher", batch=1) == 2
    assert teacher.seen == 2 and back.labelled.all()
    np.testing.assert_array_equal(back.masks[0], teacher([back.images[0]])[0])
    assert back.teacher == "stand-in; 2 labelled later by gpu-teacher"
    assert label_pack(back, teacher, "gpu-teacher") == 0  # nothing left


def test_augmentations_move_photo_and_mask_together() -> None:
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[20:60, 30:90] = 255
    mask = (photo[..., 0] > 0).astype(np.uint8) * 255
    augment = PhonePhotoAugment(64, jitter=0, white_balance=0, blur=0, jpeg=0)
    for seed in range(8):
        image, label = augment(photo, mask, np.random.default_rng(seed))
        assert image.shape == (64, 64, 3) and label.shape == (64, 64)
        bright, inside = image.mean(2) > 127, label > 127
        assert (bright == inside).mean() > 0.97, seed
    full = PhonePhotoAugment(64)
    a = full(photo, mask, np.random.default_rng(1))
    b = full(photo, mask, np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])  # seeded: a resumed run sees the same samples


def test_training_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    pack = _pack()
    settings = TrainSettings(  # one data-loading worker: the GPU box's way, living the run
        model="cutout-student", input_size=64, steps=2, batch_size=2, eval_every=2, workers=1
    )
    lines: list[str] = []
    first = train(pack, tmp_path, settings, torch.device("cpu"), False, lines.append)
    assert first["step"] == 2 and (tmp_path / LAST).is_file()
    assert 0 <= first["last_iou"] <= 1

    with pytest.raises(ValueError, match="other settings"):
        train(pack, tmp_path, TrainSettings(steps=4, workers=0), torch.device("cpu"), False)

    longer = TrainSettings(**{**settings.__dict__, "steps": 4})
    with pytest.raises(ValueError, match="other settings"):  # the schedule is part of them
        train(pack, tmp_path, longer, torch.device("cpu"), False, lines.append)

    again = train(pack, tmp_path, settings, torch.device("cpu"), False, lines.append)
    assert any("resuming from step 2" in line for line in lines)
    assert again["step"] == 2  # nothing left to do


@pytest.mark.slow
def test_the_recipe_runs_from_one_command(folder: Path, tmp_path: Path, weights: Path) -> None:
    """``python -m training.distill`` with the real teacher (IS-Net, ``half``) on a folder of
    four photos: labels, pack, a few training steps, the fp16 student and its report; run
    again, the teacher is not needed for a single photo."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / weights.name).symlink_to(weights)
    env = {"CUTOUT_MODEL_DIR": str(model_dir), "PATH": "/usr/bin:/bin"}
    holdout = tmp_path / "holdout"
    holdout.mkdir()
    Image.fromarray(load_photo("rocket")).save(holdout / "rocket.jpg")
    out = tmp_path / "out"
    args = [
        sys.executable, "-m", "training.distill", "--photos", str(folder),
        "--holdout", str(holdout), "--out", str(out), "--model", "cutout-student-256",
        "--size", "64", "--steps", "3", "--batch-size", "2", "--eval-every", "3",
        "--workers", "0", "--threads", "1", "--no-progress", "--teacher-engine", "half",
    ]  # fmt: skip
    first = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "teacher ran on 4 photos; 1 labels came from the cache" in first.stdout  # a twin
    report = json.loads((out / "report.json").read_text())
    assert report["photos"] == 1 and report["state"]["step"] == 3
    shipped = out / "cutout-student-256.safetensors"
    assert report["sha256"] and shipped.is_file()
    assert load_pack(out / "pack.npz").side == 80  # 1.25x the training input

    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "teacher ran on 0 photos; 5 labels came from the cache" in rerun.stdout

    # The GPU box's way: a pack of unlabelled photos made here, labelled where it is trained.
    deferred = [*args, "--defer-labels", "--pack-only", "--labels", str(tmp_path / "none")]
    deferred[deferred.index(str(out))] = str(tmp_path / "here")
    packed = subprocess.run(deferred, cwd=ROOT, env=env, capture_output=True, text=True)
    assert packed.returncode == 0, packed.stderr[-3000:]
    assert "5 photos packed unlabelled" in packed.stdout
    there = [*args[:3], "--pack", str(tmp_path / "here" / "pack.npz"), *args[7:]]
    there[there.index(str(out))] = str(tmp_path / "there")
    trained = subprocess.run(there, cwd=ROOT, env=env, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "labelled 5 photos of the pack with isnet-general-use-" in trained.stdout
    assert load_pack(tmp_path / "there" / "pack.npz").labelled.all()
