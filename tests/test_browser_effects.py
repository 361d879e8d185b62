"""The browser's effects (wasm/) against the server's: in Node and in headless Chromium.

For several photos the server's ``color`` output (a PNG, as a job stores it) goes through
the built module (``make wasm``) and must give the server's own ``enhancedblackwhite``,
``popart`` and ``dithering`` (tests/browser_effects.py says how equal). Node runs the module
as a client would without a page; Chromium loads it from the API, under the demo page's
content security policy, with the immutable caching it is served with.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict
from werkzeug.serving import make_server

from api import create_app
from api.errors import ApiError
from api.uploads import parse_options
from contract.effects import EFFECT_NAMES
from storage.settings import StorageSettings
from tests.browser_effects import CLIENT_EFFECTS, Case, built_module, differences, server_case
from tests.test_demo_page import browser  # noqa: F401 (the shared chromium fixture)

NODE_SCRIPT = Path(__file__).resolve().parent / "node" / "render_effects.mjs"


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    # The three golden photos at 320 px, and one at another size and aspect (other tile grid,
    # histogram stride, filter radius; the guided filter works at half size).
    return [
        *(server_case(p) for p in ("astronaut", "chelsea", "coffee")),
        server_case("coffee", 1030),
    ]


def _check(case: Case, got: dict[str, np.ndarray]) -> list[str]:
    return [
        f"{case.name} {effect}: {problem}"
        for effect in CLIENT_EFFECTS
        for problem in differences(effect, got[effect], case.want[effect])
    ]


def test_node_renders_the_servers_pixels(cases: list[Case], tmp_path: Path) -> None:
    module, wasm = built_module()
    for case in cases:
        (tmp_path / f"{case.name}.png").write_bytes(case.cutout_png)
    run = subprocess.run(
        ["node", str(NODE_SCRIPT), str(module), str(wasm), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert set(json.loads(run.stdout)) == {case.name for case in cases}
    problems = []
    for case in cases:
        shape = case.want["dithering"].shape
        got = {
            effect: np.fromfile(tmp_path / f"{case.name}-{effect}.rgba", np.uint8).reshape(shape)
            for effect in CLIENT_EFFECTS
        }
        problems += _check(case, got)
    assert not problems


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[FlaskClient]:
    settings = StorageSettings(local_dir=tmp_path / "files", redis_url=redis_url)
    app = create_app({"STORAGE": settings, "ENQUEUE": lambda job_id: None})
    with app.test_client() as c:
        yield c


def test_the_module_is_served_immutable_under_hashed_names(client: FlaskClient) -> None:
    module, wasm = built_module()
    with client.get("/static/wasm/manifest.json") as manifest:
        assert manifest.status_code == 200 and manifest.headers["Cache-Control"] == "no-cache"
        names = manifest.get_json()
    assert names == {"module": module.name, "wasm": wasm.name}
    for name, mimetype in ((module.name, "text/javascript"), (wasm.name, "application/wasm")):
        assert re.fullmatch(r"cutout-effects\.[0-9a-f]{16}\.(js|wasm)", name)
        with client.get(f"/static/wasm/{name}") as asset:
            assert asset.status_code == 200 and asset.mimetype == mimetype
            assert "immutable" in asset.headers["Cache-Control"]
            assert "max-age=31536000" in asset.headers["Cache-Control"]
    with client.get("/static/wasm/cutout-effects.js") as unhashed:
        assert unhashed.status_code == 404 and unhashed.get_json()["error"]["code"] == "not_found"
    # The wrapper names the hashed .wasm, so a new build changes both names.
    assert f'"{wasm.name}"' in module.read_text()


@pytest.fixture
def served_api(redis_url: str, tmp_path: Path) -> Iterator[str]:
    settings = StorageSettings(local_dir=tmp_path / "files", redis_url=redis_url)
    app = create_app({"STORAGE": settings, "ENQUEUE": lambda job_id: None})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


RENDER_IN_PAGE = """async ({cutouts, effects}) => {
  const names = await (await fetch("/static/wasm/manifest.json")).json();
  const lib = await import(`/static/wasm/${names.module}`);
  const fx = await lib.loadEffects();
  const b64 = (bytes) => {
    let s = ""; for (let i = 0; i < bytes.length; i += 0x8000)
      s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const out = {};
  for (const [name, png] of Object.entries(cutouts)) {
    const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
    const cutout = await lib.decodePng(bytes);
    out[name] = {};
    for (const effect of effects) out[name][effect] = b64(fx[effect](cutout).data);
  }
  return out;
}"""


def test_chromium_renders_the_servers_pixels(
    cases: list[Case],
    served_api: str,
    browser: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{served_api}/")  # the demo page: its content security policy applies
    cutouts = {case.name: base64.b64encode(case.cutout_png).decode() for case in cases}
    rendered = page.evaluate(RENDER_IN_PAGE, {"cutouts": cutouts, "effects": list(CLIENT_EFFECTS)})
    context.close()
    assert not errors
    problems = []
    for case in cases:
        shape = case.want["dithering"].shape
        got = {
            effect: np.frombuffer(base64.b64decode(data), np.uint8).reshape(shape)
            for effect, data in rendered[case.name].items()
        }
        problems += _check(case, got)
    assert not problems


@pytest.mark.parametrize(
    ("form", "effects"),
    [
        ({"client_effects": "popart,dithering"}, ("color", "enhancedblackwhite")),
        ({"client_effects": "enhancedblackwhite, popart,dithering"}, ("color",)),
        ({"client_effects": "dithering", "effects": "dithering"}, ("color",)),
        (
            {"client_effects": "popart", "effects": "dithering,popart", "format": "png"},
            ("color", "dithering"),
        ),
    ],
)
def test_client_effects_leave_the_server_the_cutout_and_the_rest(
    form: dict[str, str], effects: tuple[str, ...]
) -> None:
    options = parse_options(MultiDict(form))
    assert options.effects == effects and options.format == "png"


@pytest.mark.parametrize(
    "form",
    [
        {"client_effects": "color"},
        {"client_effects": "popart,sepia"},
        {"client_effects": "popart", "format": "webp"},
        {"client_effects": "dithering", "format": "jpg+mask"},
        {"client_effects": "popart", "background": "#ffffff"},
        {"client_effects": "popart", "crop": "subject"},
        {"client_effects": "popart", "channels": "alpha"},
    ],
)
def test_client_effects_refuses_what_a_client_cannot_render(form: dict[str, str]) -> None:
    with pytest.raises(ApiError) as refused:
        parse_options(MultiDict(form))
    assert refused.value.status == 400 and refused.value.code == "invalid_client_effects"


def test_client_effects_take_a_refined_mask() -> None:
    # Edges are refined before the effects: the cutout's alpha is the mask they used.
    options = parse_options(MultiDict({"client_effects": "popart", "refine": "edges"}))
    assert options.effects == ("color", "enhancedblackwhite", "dithering")


def test_without_client_effects_nothing_changes() -> None:
    options = parse_options(MultiDict({}))
    assert options.effects == EFFECT_NAMES and options.format == "webp"
