"""Each effect on three real photos against the committed references (tests/golden)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from contract.effects import EFFECT_NAMES
from tests import golden
from tests.conftest import PHOTO_NAMES


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, np.ndarray]]:
    return {photo: golden.render_rgba(photo) for photo in PHOTO_NAMES}


@pytest.mark.parametrize("effect", EFFECT_NAMES)
@pytest.mark.parametrize("photo", PHOTO_NAMES)
def test_effect_matches_its_reference(
    rendered: dict[str, dict[str, np.ndarray]], photo: str, effect: str
) -> None:
    want = np.asarray(Image.open(golden.reference_path(photo, effect)).convert("RGBA"))
    got = rendered[photo][effect]
    assert got.shape == want.shape
    assert not golden.differences(got, want, effect)


def test_the_references_are_small_and_current() -> None:
    manifest = golden.MANIFEST.read_text()
    assert f'"effects_version": "{golden.EFFECTS_VERSION}"' in manifest, (
        "EFFECTS_VERSION changed: regenerate the references (python -m tests.golden)"
    )
    for photo in PHOTO_NAMES:
        with Image.open(golden.mask_path(photo)) as mask:
            assert max(mask.size) == golden.SIZE <= 512


@pytest.mark.parametrize("photo", PHOTO_NAMES)
def test_the_tolerance_catches_a_real_change(
    rendered: dict[str, dict[str, np.ndarray]], photo: str
) -> None:
    # The comparison must fail on outputs that a designer would call different.
    for effect, rgba in rendered[photo].items():
        changed = rgba.copy()
        if effect == "dithering":
            changed[::2, :, :3] = 255 - changed[::2, :, :3]  # every other row inverted
        else:
            changed[..., :3] = np.roll(changed[..., :3], 1, axis=-1)  # channels swapped
            changed[..., :3] = np.where(changed[..., :3] > 127, changed[..., :3] - 40, 255)
        assert golden.differences(changed, rgba, effect), effect
