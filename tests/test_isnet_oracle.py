"""The native IS-Net against onnxruntime running the very ONNX file its weights came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workers.models import CheckpointError, build_model
from workers.models.fetch import MEDIUM, onnx_to_state_dict, weights_valid
from workers.models.isnet import ISNET_CONFIG, ISNet

PHOTOS = ("astronaut", "chelsea", "coffee")


def _input(name: str) -> np.ndarray:
    from skimage import data

    size = ISNET_CONFIG.input_size
    img = Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(img, np.float32) / 255.0
    mean = np.array(ISNET_CONFIG.mean, np.float32)
    std = np.array(ISNET_CONFIG.std, np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)[None].copy()


@pytest.fixture(scope="module")
def native(weights: Path) -> torch.nn.Module:
    return build_model("isnet-general-use", weights)


@pytest.fixture(scope="module")
def oracle(weights: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    return ort.InferenceSession(
        str(weights.parent / MEDIUM.filename), providers=["CPUExecutionProvider"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", PHOTOS)
def test_mask_matches_onnxruntime(name: str, native: torch.nn.Module, oracle) -> None:  # type: ignore[no-untyped-def]
    x = _input(name)
    expected = oracle.run(["output"], {"input": x})[0]
    with torch.inference_mode():
        got = native(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape == (1, 1, 1024, 1024)
    assert np.abs(got - expected).max() <= 1e-3
    a, b = got > 0.5, expected > 0.5
    assert a.any(), "the photo's subject should be found"
    assert (a & b).sum() / (a | b).sum() >= 0.999


def test_weights_file_is_valid_and_complete(weights: Path) -> None:
    with torch.device("meta"):
        expected = set(ISNet().state_dict())
    assert weights_valid(weights, expected)
    assert not weights_valid(weights, expected | {"extra.weight"})


def test_truncated_weights_are_invalid(weights: Path, tmp_path: Path) -> None:
    with torch.device("meta"):
        expected = set(ISNet().state_dict())
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(weights.read_bytes()[: 1 << 20])
    assert not weights_valid(broken, expected)


def test_conversion_keys_follow_module_paths(weights: Path) -> None:
    state = onnx_to_state_dict(weights.parent / MEDIUM.filename)
    assert "stage1.rebnconvin.conv_s1.weight" in state
    assert state["conv_in.weight"].shape == (64, 3, 3, 3)
    assert state["side1.weight"].dtype == np.float32


def test_wrong_checkpoint_is_refused_by_name(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with torch.device("meta"):
        keys = ISNet().state_dict()
    state = {k: torch.zeros(v.shape) for k, v in keys.items() if k != "side1.bias"}
    state["conv_in.weight"] = torch.zeros(64, 3, 5, 5)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="side1.bias"):
        build_model("isnet-general-use", path)
    state["side1.bias"] = torch.zeros(1)
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="conv_in.weight"):
        build_model("isnet-general-use", path)


def test_unknown_model_is_refused() -> None:
    with pytest.raises(KeyError, match="isnet-general-use"):
        build_model("no-such-model")
