"""The demo page at ``/``: served by the app, then used in a real headless chromium.

The browser tests drive Debian's chromium (``make browser`` installs it) through Playwright
against the real stack (gunicorn, a Celery worker, Redis) with API keys on: the page asks for
the key when the server answers 401, sends each photo's hash first and follows the job's event
stream. A missing browser fails them.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask.testing import FlaskClient
from PIL import Image

from api import create_app
from api.api_keys import hash_key, new_key
from cutout.client import ApiError, Client
from storage.settings import StorageSettings
from tests.conftest import Stack
from tests.hostile_corpus import corrupt_png

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JOB_TIMEOUT_MS = 180_000
KEY = new_key()
STACK_ENV = {"CUTOUT_AUTH": "on", "CUTOUT_API_KEYS": f"demo:{hash_key(KEY)}"}
BROWSER_EFFECTS = "Render black & white, pop art and dithering in this browser"


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[FlaskClient]:
    settings = StorageSettings(local_dir=tmp_path / "files", redis_url=redis_url)
    app = create_app({"STORAGE": settings, "ENQUEUE": lambda job_id: None})
    with app.test_client() as c:
        yield c


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_the_page_and_its_assets_are_served_from_the_package(client: FlaskClient) -> None:
    with client.get("/") as page:
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        links = _Links()
        links.feed(page.get_data(as_text=True))
    assert sorted(links.urls) == ["demo/demo.css", "demo/demo.js"]
    for url, mimetype in (("/demo/demo.css", "text/css"), ("/demo/demo.js", "text/javascript")):
        with client.get(url) as asset:
            assert asset.status_code == 200 and asset.mimetype == mimetype
            text = asset.get_data(as_text=True)
        assert "http://" not in text and "https://" not in text and "@import" not in text


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = os.environ.get("CUTOUT_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        pytest.fail(f"no chromium at {path}: run `make browser` (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A fresh page that may talk to the stack only, and fails the test on a script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    allowed = urlsplit(stack.api_url).netloc

    def check_request(request: Any) -> None:
        url = urlsplit(request.url)
        if url.scheme != "blob" and url.netloc != allowed:  # blob: the page's own images
            problems.append(f"request outside the service: {request.url}")

    page.on("request", check_request)
    page.requested = []  # type: ignore[attr-defined]
    page.on("request", lambda r: page.requested.append((r.method, urlsplit(r.url).path)))
    page.goto(f"{stack.api_url}/")
    yield page
    context.close()
    assert not problems


def _give_key(page: Any) -> None:
    """Answer the key dialog the page opens on its first 401."""
    from playwright.sync_api import expect

    expect(page.get_by_role("dialog")).to_be_visible(timeout=30_000)
    page.get_by_label("API key", exact=True).fill(KEY)
    page.get_by_role("button", name="Use this key").click()


def _uploaded(response: Any) -> bool:
    return response.request.method == "POST" and "multipart" in (
        response.request.headers.get("content-type") or ""
    )


def _all_images_loaded(page: Any) -> list[int]:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#effects img')]"
        ".every((img) => img.complete && img.naturalWidth > 0)",
        timeout=30_000,
    )
    return page.eval_on_selector_all("#effects img", "imgs => imgs.map(i => i.naturalWidth)")  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_photo_becomes_four_effects_in_the_browser(
    page: Any, stack: Stack, photos: dict[str, bytes], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(photos["astronaut"])
    # The server renders all four when the browser effects are off (the visible toggle).
    toggle = page.get_by_label(BROWSER_EFFECTS)
    expect(toggle).to_be_enabled()
    toggle.uncheck()
    page.get_by_label("Choose a photo").set_input_files(photo)
    with page.expect_response(_uploaded) as posted:
        _give_key(page)  # the hash-first POST was refused (401); with the key: 428, then this
    assert posted.value.status == 202
    job_id = posted.value.json()["id"]

    cards = page.locator("#effects li")
    expect(cards).to_have_count(4, timeout=JOB_TIMEOUT_MS)  # the previews may come first
    expect(page.get_by_role("status")).to_contain_text("Done in", timeout=JOB_TIMEOUT_MS)
    job = Client(stack.api_url, api_key=KEY).job(job_id)
    assert job["status"] == "succeeded"
    assert ("GET", f"/api/v2/jobs/{job_id}/events") in page.requested, "it followed the stream"
    assert ("GET", f"/api/v2/jobs/{job_id}") not in page.requested, "and never polled"
    names = ["color", "enhancedblackwhite", "popart", "dithering"]
    assert [cards.nth(i).get_attribute("data-effect") for i in range(4)] == names
    assert _all_images_loaded(page) == [job["outputs"][name]["width"] for name in names]

    for name in names:
        link = page.locator(f'#effects li[data-effect="{name}"]').get_by_role("link")
        expect(link).to_have_accessible_name(re.compile(r"^Download \S"))
        assert link.get_attribute("download") == f"astronaut.{name}.webp"
        download = requests.get(link.get_attribute("href"), timeout=10)
        assert download.status_code == 200 and download.headers["Content-Type"] == "image/webp"
    timings = page.locator("#timings tbody")
    for label in ("Upload", "Segmentation", "Effects", "Total"):
        expect(timings).to_contain_text(label)

    # CUTOUT_DEMO_SCREENSHOTS=docs refreshes the README's pictures.
    shots = Path(os.environ.get("CUTOUT_DEMO_SCREENSHOTS") or tmp_path)
    page.screenshot(path=shots / "demo.png", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = page.locator("#effects img").first.bounding_box()
    assert box is not None and box["width"] >= 120, "the effects stay large enough to see"
    page.screenshot(path=shots / "demo-phone.png", full_page=True)

    # The same photo again: answered by its hash alone (the key is kept in this tab).
    with page.expect_response(lambda r: r.request.method == "POST") as again:
        page.get_by_label("Choose a photo").set_input_files(photo)
    assert again.value.status == 200 and again.value.json()["cache"] == "hit"
    expect(page.get_by_role("status")).to_contain_text("Done", timeout=30_000)
    assert sum(1 for method, _ in page.requested if method == "POST") == 4, "no second upload"


@pytest.mark.slow
def test_by_default_the_browser_renders_three_effects_from_the_cutout(
    page: Any, stack: Stack, photos: dict[str, bytes], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_label(BROWSER_EFFECTS)).to_be_checked()
    expect(page.get_by_label(BROWSER_EFFECTS)).to_be_enabled()  # WebAssembly runs here
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos["coffee"])
    page.get_by_label("Choose a photo").set_input_files(photo)
    with page.expect_response(_uploaded) as posted:
        _give_key(page)
    expect(page.get_by_role("status")).to_contain_text("Done in", timeout=JOB_TIMEOUT_MS)
    job = Client(stack.api_url, api_key=KEY).job(posted.value.json()["id"])
    assert job["options"]["effects"] == ["color"] and job["options"]["format"] == "png"
    assert set(job["outputs"]) == {"color", "mask"}
    cutout = job["outputs"]["color"]
    assert cutout["content_type"] == "image/png"

    names = ["color", "enhancedblackwhite", "popart", "dithering"]
    cards = page.locator("#effects li")
    expect(cards).to_have_count(4)
    assert [cards.nth(i).get_attribute("data-effect") for i in range(4)] == names
    assert _all_images_loaded(page) == [cutout["width"]] * 4
    timings = page.locator("#timings tbody")
    for name in names[1:]:
        card = page.locator(f'#effects li[data-effect="{name}"]')
        expect(card).to_contain_text(re.compile(r"rendered in this browser in \d"))
        link = card.get_by_role("link")
        assert link.get_attribute("download") == f"coffee.{name}.png"
        # The download is the browser-made PNG, the size of the cutout.
        png = bytes(page.evaluate(DOWNLOAD_BYTES, link.get_attribute("href")))
        with Image.open(io.BytesIO(png)) as made:
            assert made.format == "PNG" and made.size == (cutout["width"], cutout["height"])
            assert made.mode == "RGBA"
    expect(timings).to_contain_text("Dithering (rendered in this browser)")


DOWNLOAD_BYTES = "async (url) => [...new Uint8Array(await (await fetch(url)).arrayBuffer())]"


@pytest.mark.slow
def test_the_background_picker_and_the_crop_toggle_reach_the_job(
    page: Any, stack: Stack, photos: dict[str, bytes], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos["coffee"])
    expect(page.get_by_label("Colour", exact=True)).to_be_hidden()
    page.get_by_label("Background").select_option("colour")
    page.get_by_label("Colour", exact=True).fill("#ff8800")
    page.get_by_label("Crop to the subject").check()
    page.get_by_label("Choose a photo").set_input_files(photo)
    with page.expect_response(_uploaded) as posted:
        _give_key(page)
    options = posted.value.json()["options"]
    assert options["background"] == "#ff8800ff" and options["crop"] == "subject"
    assert options["crop_margin"] == "5% 5% 5% 5%"


@pytest.mark.slow
def test_a_refused_file_shows_the_apis_message(page: Any, stack: Stack, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    with pytest.raises(ApiError) as refused:
        Client(stack.api_url, api_key=KEY).submit(fake.read_bytes(), fake.name)

    page.get_by_label("Choose a photo").set_input_files(fake)
    _give_key(page)
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(page.locator("#error-message")).to_have_text(refused.value.message)
    expect(page.locator("#error-code")).to_have_text("unsupported_media_type")
    expect(page.locator("#effects li")).to_have_count(0)


@pytest.mark.slow
def test_a_job_that_fails_in_the_worker_shows_its_error(
    page: Any, stack: Stack, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    broken = tmp_path / "broken.png"
    broken.write_bytes(corrupt_png())  # a sound header, garbage pixels
    page.get_by_label("Choose a photo").set_input_files(broken)
    with page.expect_response(_uploaded) as posted:
        _give_key(page)
    assert posted.value.status == 202, "the header is fine: the worker finds the fault"

    expect(page.get_by_role("alert")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    job = Client(stack.api_url, api_key=KEY).job(posted.value.json()["id"])
    assert job["status"] == "failed"
    expect(page.locator("#error-message")).to_have_text(job["error"]["message"])
    expect(page.locator("#error-code")).to_have_text("invalid_image")
