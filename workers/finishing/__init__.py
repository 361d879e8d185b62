"""Finishing a cutout after the effects: edge refinement (``refine``), crop to the subject
and placement on a canvas (``geometry``, ``compose.place``), and the background under every
effect, composited in linear light (``compose``, ``finish``).

Tensor work that runs in the device stage of the pipeline; the subject's box of each output
is measured on the host (``geometry.subject_box``) from the mask it is encoded from.
"""

from workers.finishing.finish import Finished, NoSubject, finish
from workers.finishing.geometry import Box, subject_box
from workers.finishing.refine import refine_edges

__all__ = ["Box", "Finished", "NoSubject", "finish", "refine_edges", "subject_box"]
