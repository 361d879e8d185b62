"""Native InSPyReNet against independent implementations, on identical random weights.

The peer is transparent-background 1.3.4's model code (SwinB); the Res2Net50 backbone is held
to timm's Res2Net. Weights reach our model only through the real checkpoint loader (a ``.pth``
file, ``read_state_dict`` → ``checkpoint_filter_fn`` → ``assign_weights``). A base size of 64
keeps CI cheap: the base size shapes only SICA's pooling grid, no weight, so the same weights
serve every size; the full sizes run under ``slow``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.peers import (
    calibrate_,
    peer_res2net50,
    peer_swinb,
    photos,
    randomize_,
    timm_res2net50_v1b,
)
from workers.models import CheckpointError, build_model
from workers.models.backbones.res2net import Res2Net
from workers.models.checkpoint import assign_weights, read_state_dict
from workers.models.inspyrenet import InSPyReNet, checkpoint_filter_fn
from workers.models.resize import resize_antialiased
from workers.settings import WorkerSettings

BASE = 64  # reduced base size; inputs above it go through pyramid blending
TOLERANCE = 1e-4


def load_ours(backbone: str, base_size: int, checkpoint: Path) -> nn.Module:
    state = checkpoint_filter_fn(read_state_dict(checkpoint))
    return assign_weights(partial(InSPyReNet, backbone, base_size), state)


def low_resolution(x: torch.Tensor, base: int) -> torch.Tensor:
    """What our model feeds its low-resolution pass, given to the peer as ``img_lr`` (the peer
    takes it from outside; ``test_antialiased_resize_equals_torch_interpolate`` holds it to
    torch's own antialiased resize). The very same tensor matters: the blend thresholds a map
    derived from it, and at 1280² some pixels sit within float noise of the threshold."""
    return resize_antialiased(x, (base, base))


def assert_same_saliency(ours: torch.Tensor, peer: torch.Tensor) -> None:
    assert ours.shape == peer.shape
    assert peer.std() > 0.05, "random weights should give a map that is not flat"
    assert (ours - peer).abs().max().item() <= TOLERANCE


@pytest.fixture(scope="module")
def swinb_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, nn.Module]:
    peer = peer_swinb(BASE, threshold=BASE)
    randomize_(peer, peer.forward_inspyre, (BASE, 2 * BASE))
    path = tmp_path_factory.mktemp("swinb") / "ckpt.pth"
    torch.save(peer.state_dict(), path)
    return load_ours("swinb", BASE, path), peer


@pytest.fixture(scope="module")
def res2net_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """The InSPyReNet repository's ``latest.pth`` for Res2Net50 (classifier head included),
    from the peer head on timm's Res2Net."""
    peer = peer_res2net50(BASE, threshold=BASE)
    randomize_(peer, peer.forward_inspyre, (BASE, 2 * BASE))
    path = tmp_path_factory.mktemp("res2net") / "latest.pth"
    torch.save(peer.state_dict(), path)
    return path, peer


@torch.inference_mode()
def test_swinb_matches_peer_at_base_size(swinb_pair: tuple[nn.Module, nn.Module]) -> None:
    ours, peer = swinb_pair
    x = photos(["astronaut"], BASE)
    assert_same_saliency(ours(x), peer.forward_inference(x))


@torch.inference_mode()
def test_swinb_matches_peer_through_pyramid_blending(
    swinb_pair: tuple[nn.Module, nn.Module],
) -> None:
    ours, peer = swinb_pair
    x = photos(["chelsea"], 2 * BASE)
    assert_same_saliency(ours(x), peer.forward_inference(x, low_resolution(x, BASE)))
    # The blend is exercised: the high-resolution Laplacian is kept in some places, not all.
    coarse = F.interpolate(ours.pyramid(low_resolution(x, BASE)).logits, size=(16, 16))
    band = ours.transition2(coarse)
    assert 0 < band.mean().item() < 1


@torch.inference_mode()
def test_res2net50_matches_peer_head_on_timm_backbone(
    res2net_checkpoint: tuple[Path, nn.Module],
) -> None:
    path, peer = res2net_checkpoint
    ours = load_ours("res2net50", BASE, path)
    x = photos(["astronaut"], BASE)
    assert_same_saliency(ours(x), peer.forward_inference(x))
    x = photos(["chelsea"], 2 * BASE)
    assert_same_saliency(ours(x), peer.forward_inference(x, low_resolution(x, BASE)))


@torch.inference_mode()
def test_res2net50_backbone_matches_timm() -> None:
    """timm's res2net50d is Res2Net v1b (deep stem, average-pool shortcuts, 26w×4s); with
    InSPyReNet's dilations set on it, all five feature maps agree."""
    reference = timm_res2net50_v1b()
    randomize_(reference, reference, (BASE,))
    ours = Res2Net().eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    ours.load_state_dict(state, strict=True)
    x = photos(["astronaut"], 96)
    for got, expected in zip(ours(x), reference(x), strict=True):
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= TOLERANCE * expected.abs().max().item()


@torch.inference_mode()
def test_a_mask_does_not_depend_on_its_batch_mates(
    swinb_pair: tuple[nn.Module, nn.Module],
) -> None:
    ours, _ = swinb_pair
    x = photos(["astronaut", "chelsea"], BASE)
    together = ours(x)
    for i in range(2):
        assert (together[i] - ours(x[i : i + 1])[0]).abs().max().item() <= TOLERANCE


def test_data_parallel_checkpoint_loads(res2net_checkpoint: tuple[Path, nn.Module]) -> None:
    path, _ = res2net_checkpoint
    state = torch.load(path, weights_only=True)
    wrapped = path.with_name("dataparallel.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, wrapped)
    model = build_model("inspyrenet-res2net50", wrapped)
    assert torch.equal(
        model.state_dict()["decoder.conv1.conv.weight"], state["decoder.conv1.conv.weight"]
    )


def test_legacy_torch_format_loads(res2net_checkpoint: tuple[Path, nn.Module]) -> None:
    """Checkpoints saved before torch 1.6's zip format cannot be memory-mapped: read whole."""
    path, _ = res2net_checkpoint
    state = torch.load(path, weights_only=True)
    legacy = path.with_name("legacy.pth")
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    model = build_model("inspyrenet-res2net50", legacy)
    key = "attention0.conv_query.0.conv.weight"
    assert torch.equal(model.state_dict()[key], state[key])


@pytest.mark.parametrize(
    "name", ["inspyrenet-swinb", "inspyrenet-swinb-fast", "inspyrenet-swinb-hr"]
)
def test_transparent_background_checkpoint_loads_into_each_swinb_variant(
    name: str, inspyrenet_swinb_checkpoint: Path
) -> None:
    model = build_model(name, inspyrenet_swinb_checkpoint)
    peer_state = torch.load(inspyrenet_swinb_checkpoint, weights_only=True)
    key = "backbone.layers.2.blocks.7.attn.qkv.weight"
    assert torch.equal(model.state_dict()[key], peer_state[key])


@pytest.mark.parametrize(
    ("backbone", "millions"),
    [("swinb", 90.72), ("res2net50", 28.10)],
)
def test_parameter_count_matches_the_published_architecture(backbone: str, millions: float) -> None:
    """Counted without Res2Net's classifier head, which InSPyReNet never runs (2.05 M more)."""
    with torch.device("meta"):
        model = InSPyReNet(backbone, 384)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions


def test_checkpoint_with_a_missing_key_is_refused_by_name(
    res2net_checkpoint: tuple[Path, nn.Module], tmp_path: Path
) -> None:
    state = torch.load(res2net_checkpoint[0], weights_only=True)
    del state["attention1.conv_out2.bn.running_var"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(
        CheckpointError, match=r"1 missing \['attention1.conv_out2.bn.running_var'\]"
    ):
        build_model("inspyrenet-res2net50", tmp_path / "missing.pth")


def test_checkpoint_of_the_other_backbone_is_refused_with_its_keys(
    inspyrenet_swinb_checkpoint: Path,
) -> None:
    with pytest.raises(CheckpointError, match=r"unexpected \['backbone\.layers\.0\.blocks"):
        build_model("inspyrenet-res2net50", inspyrenet_swinb_checkpoint)


def test_checkpoint_with_a_wrong_shape_is_refused_by_name(
    res2net_checkpoint: tuple[Path, nn.Module], tmp_path: Path
) -> None:
    state = torch.load(res2net_checkpoint[0], weights_only=True)
    state["context2.branch1.conv3.conv.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(
        CheckpointError, match=r"context2\.branch1\.conv3\.conv\.weight.*\(64, 64, 5, 5\)"
    ):
        build_model("inspyrenet-res2net50", tmp_path / "shape.pth")


def test_truncated_checkpoint_is_refused(
    res2net_checkpoint: tuple[Path, nn.Module], tmp_path: Path
) -> None:
    broken = tmp_path / "truncated.pth"
    broken.write_bytes(res2net_checkpoint[0].read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        build_model("inspyrenet-res2net50", broken)


@pytest.mark.slow
def test_forward_exports_as_one_graph(swinb_pair: tuple[nn.Module, nn.Module]) -> None:
    """torch.export (the compiled and TensorRT engines' first step) needs one graph: only shapes
    steer the Python control flow. The blending path holds both single passes, so exporting it
    covers the base-size path too."""
    ours, _ = swinb_pair
    x = photos(["coffee"], 2 * BASE)
    with torch.inference_mode():
        exported = torch.export.export(ours, (x,)).module()
        assert (exported(x) - ours(x)).abs().max().item() <= TOLERANCE


def test_antialiased_resize_equals_torch_interpolate() -> None:
    """The pyramid's low-resolution input, built from matrix products so that it exports."""
    x = photos(["astronaut", "coffee"], 131)[:, :, :, :97]
    for size in [(64, 64), (40, 77), (384, 384)]:
        expected = F.interpolate(x, size=size, mode="bilinear", antialias=True)
        assert (resize_antialiased(x, size) - expected).abs().max().item() <= 1e-5


def test_a_model_without_fetched_weights_needs_a_checkpoint() -> None:
    settings = WorkerSettings.from_env({"CUTOUT_MODEL": "inspyrenet-swinb"})
    with pytest.raises(ValueError, match="CUTOUT_CHECKPOINT"):
        settings.checkpoint_path()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "base", "size"),
    [
        ("inspyrenet-swinb-fast", 384, 384),
        ("inspyrenet-swinb-hr", 384, 1280),
        ("inspyrenet-swinb", 1024, 1024),
    ],
)
def test_swinb_variants_match_peer_at_full_size(
    name: str, base: int, size: int, inspyrenet_swinb_checkpoint: Path, tmp_path: Path
) -> None:
    """ckpt_fast.pth and ckpt_base.pth as transparent-background runs them (one pass), and the
    384 weights at 1280 with the repository's blending (threshold 512)."""
    peer = peer_swinb(base, threshold=None if size == base else 512)
    peer.load_state_dict(torch.load(inspyrenet_swinb_checkpoint, weights_only=True))
    checkpoint = inspyrenet_swinb_checkpoint
    x = photos(["astronaut"], size)
    if base != 384:  # SICA's grid grows with the base size: recalibrate, on the photo itself
        calibrate_(peer, peer.forward_inspyre, (size,), ("astronaut",))
        checkpoint = tmp_path / "ckpt_base.pth"
        torch.save(peer.state_dict(), checkpoint)
    ours = build_model(name, checkpoint)
    with torch.inference_mode():
        expected = peer.forward_inference(x, low_resolution(x, base))
        assert_same_saliency(ours(x), expected)
