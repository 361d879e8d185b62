"""Server CPU per job with three effects left to the client (``client_effects``) against all
four on the server, and the browser's render time per effect next to the server's CPU time.

Run through ``bench/effects.py --client-effects`` (its photo and mask). The server side is
what a job costs a gpu worker's process on the CPU: the effects pass, dithering's host step
and the encodes of every output and the mask, one thread, CPU time (``process_time``). The
browser side is the built module (``make wasm``) in headless Chromium (Playwright, Debian's
chromium), and in Node, on the server's own ``color`` PNG.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from contract.effects import CLIENT_EFFECTS, EFFECT_NAMES
from workers.effects import render
from workers.imageio import encode_mask
from workers.outputs import encode_effect

BUILT = Path(__file__).resolve().parent.parent / "api" / "static" / "wasm"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _to_host(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()[0]


def _job(image: torch.Tensor, mask: torch.Tensor, names: Sequence[str], fmt: str) -> bytes:
    """One job's server work on the CPU: render, then encode every output and the mask.
    Returns the ``color`` file (the client's input)."""
    rendered = render(image, mask, names)
    alpha = _to_host(rendered.alpha)[..., 0]
    files = {n: encode_effect(n, _to_host(c), alpha, fmt) for n, c in rendered.colours.items()}
    encode_mask(alpha)
    return files.get("color", b"")


def _cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def _module() -> tuple[str, bytes]:
    names = json.loads((BUILT / "manifest.json").read_text())
    return (BUILT / names["module"]).read_text(), (BUILT / names["wasm"]).read_bytes()


BROWSER_TIMES = """async ({js, wasm, png, repeats}) => {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const url = URL.createObjectURL(new Blob([js], { type: "text/javascript" }));
  const lib = await import(url);
  const fx = await lib.loadEffects(bytes(wasm));
  const cutout = await lib.decodePng(bytes(png));
  const out = {};
  for (const name of lib.CLIENT_EFFECTS) {
    fx[name](cutout);  // warm
    const times = [];
    for (let i = 0; i < repeats; i++) {
      const start = performance.now();
      fx[name](cutout);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    out[name] = times[Math.floor(times.length / 2)];
  }
  return out;
}"""


def browser_ms(cutout_png: bytes, repeats: int) -> dict[str, float]:
    """Median ms per effect in headless Chromium."""
    from playwright.sync_api import sync_playwright

    js, wasm = _module()
    path = os.environ.get("CUTOUT_CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        times = page.evaluate(
            BROWSER_TIMES,
            {
                "js": js,
                "wasm": base64.b64encode(wasm).decode(),
                "png": base64.b64encode(cutout_png).decode(),
                "repeats": repeats,
            },
        )
        browser.close()
    return {name: float(ms) for name, ms in times.items()}


NODE_TIMES = """
import { readFileSync } from "node:fs";
import { writeFileSync } from "node:fs";
const [js, wasm, png, repeats, dir] = process.argv.slice(1);
const lib = await import(js);
const fx = await lib.loadEffects(readFileSync(wasm));
const cutout = await lib.decodePng(readFileSync(png));
const out = {};
for (const name of lib.CLIENT_EFFECTS) {
  fx[name](cutout);
  const t = [];
  for (let i = 0; i < +repeats; i++) {
    const s = performance.now();
    fx[name](cutout);
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  out[name] = t[Math.floor(t.length / 2)];
  writeFileSync(`${dir}/${name}.rgba`, fx[name](cutout).data);
}
console.log(JSON.stringify(out));
"""


def node_ms(cutout_png: bytes, repeats: int, scratch: Path) -> dict[str, float]:
    names = json.loads((BUILT / "manifest.json").read_text())
    png = scratch / "cutout.png"
    png.write_bytes(cutout_png)
    run = subprocess.run(
        [
            "node",
            "--input-type=module",
            "-e",
            NODE_TIMES,
            (BUILT / names["module"]).as_uri(),
            str(BUILT / names["wasm"]),
            str(png),
            str(repeats),
            str(scratch),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return {name: float(ms) for name, ms in json.loads(run.stdout).items()}


def _equal_to_server(image: torch.Tensor, mask: torch.Tensor, scratch: Path) -> dict[str, str]:
    """Per effect: 'bit-exact', or how many pixels differ from the server's CPU render."""
    rendered = render(image, mask, CLIENT_EFFECTS)
    alpha = _to_host(rendered.alpha)
    verdicts = {}
    for name, colour in rendered.colours.items():
        rgb = np.broadcast_to(_to_host(colour), (*alpha.shape[:2], 3)) * (alpha > 0)
        want = np.dstack((rgb, alpha))
        got = np.fromfile(scratch / f"{name}.rgba", np.uint8).reshape(want.shape)
        differ = int((got != want).any(-1).sum())
        verdicts[name] = "bit-exact" if not differ else f"{differ} pixels differ"
    return verdicts


def report(image: torch.Tensor, mask: torch.Tensor, repeats: int, scratch: Path) -> None:
    width, height = image.shape[-1], image.shape[-2]
    client = ",".join(CLIENT_EFFECTS)
    jobs = {
        "all four on the server, webp (the default)": lambda: _job(
            image, mask, EFFECT_NAMES, "webp"
        ),
        "all four on the server, png": lambda: _job(image, mask, EFFECT_NAMES, "png"),
        f"client_effects={client} (color on the server, png)": lambda: _job(
            image, mask, ["color"], "png"
        ),
    }
    cost = {name: _cpu_ms(fn, repeats) for name, fn in jobs.items()}
    base = next(iter(cost.values()))
    print(f"### Server CPU per job, {width}x{height}, one thread (medians of {repeats})\n")
    print("| job | CPU ms | vs all four, webp |")
    print("|---|---:|---:|")
    for name, ms in cost.items():
        print(f"| {name} | {ms:.0f} | {(ms / base - 1) * 100:+.0f} % |")
    print()

    # The server's CPU per effect: what adding it to a colour-only job costs (render + encode).
    colour_only = _cpu_ms(lambda: _job(image, mask, ["color"], "webp"), repeats)
    per_effect = {
        name: _cpu_ms(lambda name=name: _job(image, mask, ["color", name], "webp"), repeats)
        - colour_only
        for name in CLIENT_EFFECTS
    }
    cutout = _job(image, mask, ["color"], "png")
    chromium = browser_ms(cutout, repeats)
    node = node_ms(cutout, repeats, scratch)
    exact = _equal_to_server(image, mask, scratch)
    print(f"### Each effect at {width}x{height}: browser render vs the server's CPU\n")
    print("Server: the CPU one job spends on the effect (render + webp encode, one thread).")
    print("Browser: the module's render call on the decoded cutout (no decode, no encode).\n")
    print("Equal: the module's output (Node) against the server's CPU render, pixel for pixel.\n")
    print("| effect | server CPU ms | headless Chromium ms | Node ms | equal |")
    print("|---|---:|---:|---:|---|")
    for name in CLIENT_EFFECTS:
        print(
            f"| {name} | {per_effect[name]:.0f} | {chromium[name]:.0f} | {node[name]:.0f} "
            f"| {exact[name]} |"
        )
    print()
