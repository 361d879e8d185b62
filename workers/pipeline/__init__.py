"""One micro-batch of jobs: decode → device stage → host stage → outcomes.

A worker runs a few batches at once (Celery's thread pool). Only device work holds the
one-batch-at-a-time device lock: the model call, the effects pass and device-side JPEG encodes
(``device``); the copies back to the host are started there and waited for after the lock is
released (``transfer``). Everything on the host — decoding (``decode``), the effects' host
steps such as dithering where the device has no kernel for it, PNG/WebP/JPEG encodes and
previews (``host``) — runs on a shared thread pool outside the lock (Pillow releases the GIL),
so while batch k is on the device, batch k+1 decodes and batch k−1 encodes. ``process``
returns each stage's wall-clock span, the lock's hold time and the device work in it, which
the worker logs per batch.

Each job fails alone: a bad image gets its own ``invalid_image`` outcome and the rest of the
batch goes on; running out of device memory splits the model call or the effects pass in
halves down to one image (``resources_exhausted`` if even that fails). Each job's outcome is
assembled once at the end from what the stages handed back (``outcomes``). A job may ask for
a preview: small WebPs of its effects, handed to ``on_preview`` before its full outputs are
encoded (``previews``). On CUDA a batch's JPEGs may be decoded on the device in one call
(``workers.device_decode``) and the JPEG parts of ``jpg+mask`` encoded there
(``workers.outputs.device_jpeg_encoder``); Pillow on the pool otherwise.
"""

from workers.pipeline.batch import Pipeline
from workers.pipeline.jobs import (
    BatchResult,
    EncodedOutput,
    Failure,
    JobInput,
    JobOutcome,
    ModelCall,
    OnPreview,
)
from workers.pipeline.previews import PREVIEW_CODEC, PREVIEW_SIDE

__all__ = [
    "PREVIEW_CODEC",
    "PREVIEW_SIDE",
    "BatchResult",
    "EncodedOutput",
    "Failure",
    "JobInput",
    "JobOutcome",
    "ModelCall",
    "OnPreview",
    "Pipeline",
]
