"""First properties of the four effects on tensors (no files, no model)."""

from __future__ import annotations

import pytest
import torch

from workers.effect_names import EFFECT_NAMES
from workers.effects import EFFECTS, apply_effects


def _inputs(b: int = 2, h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(b, 3, h, w, generator=gen)
    mask = torch.zeros(b, 1, h, w)
    mask[:, :, 8:40, 10:50] = 1.0
    mask[:, :, 8:40, 9] = 0.5  # a soft edge
    return image, mask


def test_registry_matches_the_names_the_api_accepts() -> None:
    assert tuple(EFFECTS) == EFFECT_NAMES


@pytest.mark.parametrize("name", EFFECT_NAMES)
def test_every_effect_is_rgba_with_the_mask_as_alpha(name: str) -> None:
    image, mask = _inputs()
    out = apply_effects(image, mask, [name])[name]
    assert out.shape == (2, 4, 48, 64)
    assert torch.equal(out[:, 3:], mask)
    assert out.min() >= 0 and out.max() <= 1


def test_color_keeps_the_subject_colours() -> None:
    image, mask = _inputs()
    out = apply_effects(image, mask, ["color"])["color"]
    inside = mask[:, 0] == 1
    assert torch.allclose(out[:, :3].permute(0, 2, 3, 1)[inside], image.permute(0, 2, 3, 1)[inside])


def test_dithering_is_two_valued() -> None:
    image, mask = _inputs()
    out = apply_effects(image, mask, ["dithering"])["dithering"]
    assert set(out[:, :3].unique().tolist()) <= {0.0, 1.0}


def test_popart_uses_a_small_palette() -> None:
    image, mask = _inputs()
    out = apply_effects(image, mask, ["popart"])["popart"]
    colours = out[:, :3].permute(0, 2, 3, 1).reshape(-1, 3).unique(dim=0)
    assert len(colours) <= 4


def test_unknown_effect_is_refused() -> None:
    image, mask = _inputs()
    with pytest.raises(KeyError, match="sparkle"):
        apply_effects(image, mask, ["sparkle"])
