"""Ways of running a segmentation model, all behind one interface (``base.Engine``).

One module per engine (``eager``, ``half``, ``compiled``, ``ort`` for ``onnxruntime`` and
``int8``, ``tensorrt``), a registry (``registry.ENGINES``), the quality gate (``gate``,
``python -m workers.engines.check``) and its report, and ``select`` which turns
``CUTOUT_ENGINE`` (``auto`` included) into a built engine.
"""

from workers.engines.base import Engine, EngineContext, EngineUnavailable
from workers.engines.registry import ENGINES, build_engine

__all__ = ["ENGINES", "Engine", "EngineContext", "EngineUnavailable", "build_engine"]
