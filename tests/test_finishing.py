"""Finishing a cutout: the crop/fit/placement rules, the linear-light composite, the edge
refinement, and a batch of jobs with different options through the pipeline's stages (a
stand-in engine, so no weights and about a second)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from contract.options import Finishing, Layout, Margin, parse_margin, parse_position
from tests.test_pipeline_stages import ALL, CONFIG, StandInEngine, photo
from workers.finishing.compose import composite, fill, place, srgb_to_linear
from workers.finishing.finish import subject_box_on_device
from workers.finishing.geometry import Box, plan, subject_box
from workers.finishing.refine import refine_edges
from workers.pipeline import EncodedOutput, JobInput, Pipeline
from workers.predictor import Segmenter


def test_crop_margins_fit_and_position_follow_remove_bg() -> None:
    subject = Box(100, 50, 200, 100)
    margin = parse_margin("10%")  # of the subject's height (top, bottom) and width (sides)
    assert margin.pixels(200, 100) == (10, 20, 10, 20)
    cropped = plan(400, 300, subject, Layout(crop=True, margin=margin))
    assert cropped.source == Box(80, 40, 240, 120) and cropped.canvas == (240, 120)
    assert parse_margin("1px 2px 3px 4px").pixels(9, 9) == (1, 2, 3, 4)
    # Past the photo's edges: the margin is kept (that part is empty), never clipped.
    edge = plan(400, 300, Box(0, 0, 50, 50), Layout(crop=True, margin=parse_margin("5px")))
    assert edge.source == Box(-5, -5, 60, 60)
    # A fixed size: scaled to fit (up here), placed in the free space by position.
    sized = Layout(crop=True, margin=Margin(), size=(400, 400), position=parse_position("0% 100%"))
    fitted = plan(400, 300, subject, sized)
    assert fitted.target == Box(0, 200, 400, 200) and fitted.canvas == (400, 400)
    centred = plan(400, 300, subject, Layout(size=(200, 200)))  # no crop: the whole photo
    assert centred.target == Box(0, 25, 200, 150)
    # The canvas under the same scaling, for a background that fills it.
    assert fitted.canvas_source() == (100.0, -50.0, 200.0, 200.0)
    with pytest.raises(ValueError):
        plan(400, 300, Box(0, 0, 0, 0), Layout(crop=True))
    # A subject in the top left corner, no margin: still a crop, never the whole photo.
    corner = plan(40, 30, Box(0, 0, 10, 5), Layout(crop=True))
    layer = torch.arange(1200.0).view(1, 30, 40)
    assert not corner.identity(40, 30) and place(layer, corner).shape == (1, 5, 10)
    assert torch.equal(place(layer, corner), layer[:, :5, :10])


def test_the_box_is_the_extent_of_the_pixels_at_least_five_percent_opaque() -> None:
    mask = np.zeros((40, 60), np.uint8)
    mask[5:9, 10:30] = 255
    mask[20, 50] = 13  # 5 %: counts
    mask[30, 2] = 12  # below: haze, does not
    assert subject_box(mask) == Box(10, 5, 41, 16)
    on_device = subject_box_on_device(torch.from_numpy(mask)[None].float() / 255)
    assert on_device == subject_box(mask)
    assert subject_box(np.zeros((4, 4), np.uint8)) == Box(0, 0, 0, 0)


def test_compositing_is_in_linear_light() -> None:
    white, half = torch.ones(3, 1, 1), torch.full((1, 1, 1), 0.5)
    colour, alpha = composite(white, half, srgb_to_linear(torch.zeros(3, 1, 1)), 1.0)
    # Half of white's light over black: linear 0.5 is sRGB 188, not the sRGB average 128.
    assert round(float(colour[0, 0, 0]) * 255) == 188 and float(alpha) == 1.0
    # Over a half-transparent background: "over", straight colour.
    colour, alpha = composite(white, torch.zeros(1, 1, 1), torch.zeros(3, 1, 1), 0.5)
    assert float(alpha) == 0.5 and float(colour.max()) == 0.0


def test_a_filled_background_repeats_the_edge_past_the_photo() -> None:
    layer = torch.arange(4.0).view(1, 1, 4).expand(1, 2, 4).contiguous()
    where = plan(4, 2, Box(0, 0, 4, 2), Layout(crop=True, margin=parse_margin("2px")))
    filled = fill(layer, where)
    assert filled.shape == (1, 6, 8)
    assert filled[0, 0].tolist() == [0, 0, 0, 1, 2, 3, 3, 3]


def test_edge_refinement_follows_the_photos_edge_and_keeps_solid_regions() -> None:
    # A sharp vertical edge in a 2048 px photo; the mask is the same edge blurred over 9 px
    # (as a 1024² mask scaled up 2x or more comes out).
    image = torch.zeros(1, 3, 32, 2048)
    image[..., 1024:] = 1
    truth = (torch.arange(2048) >= 1024).float().expand(1, 1, 32, 2048)
    soft = F.avg_pool2d(truth, (1, 9), stride=1, padding=(0, 4), count_include_pad=False)
    refined = refine_edges(image, soft)
    band = (soft > 0.02) & (soft < 0.98)
    assert (refined - truth)[band].abs().mean() < 0.6 * (soft - truth)[band].abs().mean()
    far = (torch.arange(2048) < 1000) | (torch.arange(2048) >= 1050)
    assert torch.equal(refined[..., far], soft[..., far])


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_a_batch_of_jobs_each_finished_its_own_way(pool: ThreadPoolExecutor) -> None:
    def job(job_id: str, fmt: str = "png", effects: tuple[str, ...] = ALL, **form: str) -> JobInput:
        return JobInput(job_id, photo(), effects, 96, fmt, finishing=Finishing.from_form(form))

    blue = io.BytesIO()
    Image.new("RGB", (30, 20), (0, 0, 255)).save(blue, "PNG")
    dark = io.BytesIO()
    Image.new("RGB", (96, 64), (0, 0, 0)).save(dark, "JPEG")
    uploaded = Finishing.from_form({}, image_sha256="f" * 64)
    jobs = [
        job("plain"),
        job("white", background="#ffffff"),
        job("product", "jpg+mask", background="#ffffff", crop="subject", crop_margin="10%",
            size="120x120", position="0%"),
        job("crop", crop="subject", crop_margin="4px"),
        job("blur", "webp", ("color",), background="blur", refine="edges"),
        JobInput("image", photo(), ("color",), 96, "png", finishing=uploaded,
                 background=blue.getvalue()),
        job("alpha", effects=()),
        JobInput("nothing", dark.getvalue(), ("color",), 96, "png",
                 finishing=Finishing.from_form({"crop": "subject"})),
    ]  # fmt: skip
    jobs[2] = replace(jobs[2], preview=True)
    previews: dict[str, list[EncodedOutput]] = {}
    pipeline = Pipeline(Segmenter(StandInEngine(), CONFIG), pool)
    result = pipeline.process(jobs, lambda job_id, outs: previews.setdefault(job_id, outs))
    outcomes = {o.job_id: o for o in result.outcomes}
    # The previews show the job finished: its canvas, its background.
    assert [p.name for p in previews["product"]] == list(ALL)
    for preview in previews["product"]:
        assert (preview.width, preview.height) == _open(preview.data).size == (120, 120)
        assert np.asarray(_open(preview.data).convert("RGBA"))[..., 3].min() == 255

    assert outcomes["nothing"].error_code == "no_subject" and not outcomes["nothing"].outputs
    for name, outcome in outcomes.items():
        if name == "nothing":
            continue
        assert outcome.ok, (name, outcome.error_message)
        out = {o.name: o for o in outcome.outputs}
        mask = np.asarray(_open(out["mask"].data))
        assert _open(out["mask"].data).mode == "L"
        assert outcome.foreground == subject_box(mask).as_tuple(), name
        for o in out.values():
            assert _open(o.data).size == (o.width, o.height) == mask.shape[::-1], (name, o.name)

    plain, white = outcomes["plain"].outputs, {o.name: o for o in outcomes["white"].outputs}
    assert [o.name for o in plain] == [*ALL, "mask"]
    for name in ALL:  # opaque: no alpha channel, grey effects turned colour
        assert _open(white[name].data).mode == "RGB", name
    mask = np.asarray(_open(white["mask"].data))
    assert (np.asarray(_open(white["color"].data))[mask == 0] == 255).all()

    product = {o.name: o for o in outcomes["product"].outputs}
    assert (product["color"].content_type, product["popart"].content_type) == (
        "image/jpeg",
        "image/png",
    )
    left, top, width, height = outcomes["product"].foreground or ()
    # The crop (the box and 10 % each side) fills the width; placed at the top ("0%").
    assert product["color"].width == 120 and abs(2 * left + width - 120) <= 2
    assert top <= 0.2 * height + 1 < (120 - height) / 2

    crop = outcomes["crop"]
    assert crop.foreground is not None and crop.foreground[:2] == (4, 4)
    assert {o.name: o for o in crop.outputs}["popart"].width == crop.foreground[2] + 8

    assert _open(outcomes["blur"].outputs[0].data).mode == "RGB"
    image = {o.name: o for o in outcomes["image"].outputs}
    clear = np.asarray(_open(image["mask"].data)) == 0
    assert (np.asarray(_open(image["color"].data))[clear] == (0, 0, 255)).all()
    assert [o.name for o in outcomes["alpha"].outputs] == ["mask"]
