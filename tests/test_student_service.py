"""A worker started with ``CUTOUT_MODEL=cutout-student`` serves jobs end to end.

The checkpoint is a briefly trained student (``student_checkpoint`` in conftest); the mask
that comes back over HTTP is compared with the one the same checkpoint gives in this process,
so the worker provably ran the student on those weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.test_service_e2e import poll, served_mask, submit
from workers.predictor import load_segmenter
from workers.settings import WorkerSettings

pytestmark = pytest.mark.slow
STACK_ENV: dict[str, str] = {}  # the ``stack`` fixture starts its processes with these


@pytest.fixture(scope="module", autouse=True)
def _student_stack_env(student_checkpoint: Path) -> None:
    """Autouse, so it runs before ``stack`` reads ``STACK_ENV`` (the checkpoint is a fixture)."""
    STACK_ENV.update(
        CUTOUT_MODEL="cutout-student",
        CUTOUT_CHECKPOINT=str(student_checkpoint),
        CUTOUT_ENGINE="eager",
    )


def test_worker_serves_jobs_with_the_student(stack: Stack, photos: dict[str, bytes]) -> None:
    responses = {name: submit(stack, photos[name], format="png") for name in ("chelsea", "coffee")}
    segmenter, _ = load_segmenter(WorkerSettings.from_env(stack.env))
    assert segmenter.config.model_id == "cutout-student"
    for name, response in responses.items():
        assert response.status_code == 202, response.text
        job = poll(stack, response.headers["Location"])
        assert job["status"] == "succeeded", job
        assert set(job["outputs"]) == {"color", "enhancedblackwhite", "popart", "dithering", "mask"}
        assert job["model_input"] == 384

        mask = served_mask(job, photos[name], segmenter)
        assert mask.std() > 5, "the trained student's mask should not be flat (random: 0.04)"
