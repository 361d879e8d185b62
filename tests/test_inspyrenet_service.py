"""A worker started on an operator's InSPyReNet checkpoint serves jobs end to end.

The checkpoint is random weights in transparent-background's format, written by that package's
own model; the mask that comes back over HTTP is compared with the one the same checkpoint gives
in this process, so the worker provably ran InSPyReNet on those weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.test_service_e2e import poll, served_mask, submit
from workers.predictor import load_segmenter
from workers.settings import WorkerSettings

pytestmark = pytest.mark.slow
MODEL = "inspyrenet-swinb-fast"  # 384: the SwinB variant a 2-core CI machine runs in seconds
STACK_ENV: dict[str, str] = {}  # the ``stack`` fixture starts its processes with these


@pytest.fixture(scope="module", autouse=True)
def _inspyrenet_stack_env(inspyrenet_swinb_checkpoint: Path) -> None:
    """Autouse, so it runs before ``stack`` reads ``STACK_ENV`` (the checkpoint is a fixture)."""
    STACK_ENV.update(CUTOUT_MODEL=MODEL, CUTOUT_CHECKPOINT=str(inspyrenet_swinb_checkpoint))


def test_worker_serves_jobs_with_an_inspyrenet_checkpoint(
    stack: Stack, photos: dict[str, bytes]
) -> None:
    responses = {name: submit(stack, photos[name], format="png") for name in ("chelsea", "coffee")}
    segmenter, _ = load_segmenter(WorkerSettings.from_env(stack.env))
    for name, response in responses.items():
        assert response.status_code == 202, response.text
        job = poll(stack, response.headers["Location"])
        assert job["status"] == "succeeded", job
        assert set(job["outputs"]) == {"color", "enhancedblackwhite", "popart", "dithering", "mask"}

        mask = served_mask(job, photos[name], segmenter)
        assert mask.std() > 5, "the random-weight map should not be flat"
