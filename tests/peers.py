"""Independent implementations the native models are held to, imported without what they
cannot import here.

- ``transparent_background`` 1.3.4 (the InSPyReNet SwinB peer), installed ``--no-deps``: only its
  model modules are imported; its package ``__init__`` pulls in the GUI, the downloader,
  albumentations and torchvision, none of which the model uses.
- ``timm`` 1.0.31 (Swin layers for the peer, Res2Net for our backbone), installed ``--no-deps``:
  its package imports torchvision at import time (datasets, transforms, FrozenBatchNorm2d), and
  PyPI's torchvision does not import beside this torch. While timm is imported, a placeholder
  ``torchvision`` answers those imports with classes that raise if they are ever used; neither
  the Swin layers nor Res2Net use them. The placeholder is removed once timm is imported.
- kornia (its real morphology, which the peer's pyramid blending calls) imports as it is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _Unavailable(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable(name, (), {})

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"torchvision.{cls.__name__} is a placeholder: torchvision is absent")


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Unavailable(name, (), {})


class _TorchvisionPlaceholder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname.split(".")[0] == "torchvision":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def import_timm() -> types.ModuleType:
    if "timm" in sys.modules:
        return sys.modules["timm"]
    if "torchvision" in sys.modules:
        raise RuntimeError("a torchvision module is already imported; cannot place a placeholder")
    finder = _TorchvisionPlaceholder()
    sys.meta_path.insert(0, finder)
    try:
        import timm
        import timm.layers
        import timm.models.res2net  # noqa: F401
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] == "torchvision"]:
            del sys.modules[name]
    return timm


def import_transparent_background() -> types.ModuleType:
    """``transparent_background.InSPyReNet`` without running the package's ``__init__``."""
    import_timm()
    if "transparent_background" not in sys.modules:
        spec = importlib.util.find_spec("transparent_background")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("transparent-background is not installed (make setup installs it)")
        package = types.ModuleType("transparent_background")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["transparent_background"] = package
    return importlib.import_module("transparent_background.InSPyReNet")


def peer_swinb(base_size: int, threshold: int | None = None) -> nn.Module:
    """transparent-background's ``InSPyReNet_SwinB`` (seeded random init), in eval mode."""
    peer = import_transparent_background()
    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(0)
        # Its Swin calls torch.meshgrid without indexing=.
        warnings.filterwarnings("ignore", message="torch.meshgrid", category=UserWarning)
        model = peer.InSPyReNet_SwinB(
            depth=64, pretrained=False, base_size=[base_size, base_size], threshold=threshold
        )
    return model.eval()


def timm_res2net50_v1b() -> nn.Module:
    """timm's ``res2net50d`` (deep stem, average-pool shortcuts: Res2Net v1b) with InSPyReNet's
    dilations set on its 3×3 convs (timm trades stride for dilation; InSPyReNet keeps both),
    returning the five feature maps InSPyReNet reads."""
    timm = import_timm()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = timm.models.res2net.res2net50d(pretrained=False)
    for layer, dilations in ((model.layer3, [2] * 6), (model.layer4, [4, 8, 16])):
        for block, d in zip(layer, dilations, strict=True):
            for conv in block.convs:
                conv.dilation, conv.padding = (d, d), (d, d)

    def features(self: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        outs = [x]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs

    model.forward = types.MethodType(features, model)
    return model.eval()


def peer_res2net50(base_size: int, threshold: int | None = None) -> nn.Module:
    """The peer's InSPyReNet head on timm's Res2Net: the repository's InSPyReNet_Res2Net50,
    assembled from the two independent implementations (same state-dict keys, fc included)."""
    peer = import_transparent_background()
    backbone = timm_res2net50_v1b()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = peer.InSPyReNet(
            backbone,
            [64, 256, 512, 1024, 2048],
            depth=64,
            base_size=[base_size, base_size],
            threshold=threshold,
        )
    return model.eval()


CALIBRATION_PHOTOS = ("rocket", "hubble_deep_field", "immunohistochemistry", "retina", "coffee")


def photos(names: tuple[str, ...] | list[str], size: int) -> torch.Tensor:
    """scikit-image's bundled photos as a model input: RGB, antialiased resize to size×size,
    ImageNet mean/std (InSPyReNet's preprocessing)."""
    from skimage import data

    from workers.models.inspyrenet import IMAGENET_MEAN, IMAGENET_STD

    images = [torch.from_numpy(getattr(data, n)()[..., :3].copy()) for n in names]
    batch = torch.stack(
        [
            F.interpolate(
                img.permute(2, 0, 1)[None].float() / 255,
                size=(size, size),
                mode="bilinear",
                antialias=True,
            )[0]
            for img in images
        ]
    )
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


@torch.no_grad()
def randomize_(
    model: nn.Module,
    run: Callable[[torch.Tensor], Any],
    sizes: tuple[int, ...],
    calibration: tuple[str, ...] = CALIBRATION_PHOTOS,
) -> nn.Module:
    """Give every parameter and float buffer non-trivial values that keep activations near 1.

    Multi-dimensional weights keep their (random) initialisation; the 1-D tensors that start as
    constants (norm scales and shifts, biases, the attention gains that start at zero, SICA's
    thresholds) are perturbed. Then ``calibrate_`` sets the batch-norm statistics.
    """
    gen = torch.Generator().manual_seed(0)
    for tensor in model.state_dict().values():
        if tensor.is_floating_point() and tensor.dim() == 1:
            tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return calibrate_(model, run, sizes, calibration)


@torch.no_grad()
def calibrate_(
    model: nn.Module,
    run: Callable[[torch.Tensor], Any],
    sizes: tuple[int, ...],
    calibration: tuple[str, ...] = CALIBRATION_PHOTOS,
) -> nn.Module:
    """Batch-norm statistics := their average over forward passes (``run``) of real photos at
    each of ``sizes``, so that logits stay in the sigmoid's range on photos instead of growing
    through the decoder's un-activated convs. SICA sums over a grid set by the base size, so
    weights calibrated for one base size saturate at another: calibrate at the one in use."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.train()
        norm.reset_running_stats()
        norm.momentum = None
    for size in sizes:
        run(photos(calibration, size))
    for norm in norms:
        norm.eval()
    return model
