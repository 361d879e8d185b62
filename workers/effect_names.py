"""The effect names, for ``workers/pipeline.py``'s import until its rewrite (issue 14) imports
them from ``contract.effects``, where they live."""

from contract.effects import EFFECT_NAMES

__all__ = ["EFFECT_NAMES"]
