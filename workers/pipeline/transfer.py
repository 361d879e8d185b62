"""Device → host copies that do not hold the device: issued at once, waited for later.

On CUDA each tensor is copied into pinned host memory on a copy stream of its own (so the
next batch's model, on the compute stream, runs while the copies do), and a CUDA event marks
the end; ``wait`` blocks on that event alone, after the device lock is released. On a CPU the
tensors are host memory already and nothing is copied.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


class HostCopy:
    def __init__(self, host: dict[str, torch.Tensor], done: torch.cuda.Event | None) -> None:
        self._host = host
        self._done = done

    @classmethod
    def start(
        cls, tensors: Mapping[str, torch.Tensor], stream: torch.cuda.Stream | None
    ) -> HostCopy:
        """Start copying ``tensors`` to the host (``stream``: the copy stream, None on a CPU)."""
        if stream is None:
            return cls({name: t.cpu() for name, t in tensors.items()}, None)
        # The copy stream starts after what the compute stream has queued (the effects).
        stream.wait_stream(torch.cuda.current_stream(stream.device))
        host = {}
        with torch.cuda.stream(stream):
            for name, t in tensors.items():
                # The compute stream may reuse a tensor's memory once it is freed there: tell
                # the allocator this stream still reads it (``contiguous`` runs here too).
                t.record_stream(stream)
                source = t.contiguous()
                buffer = torch.empty(source.shape, dtype=source.dtype, pin_memory=True)
                host[name] = buffer.copy_(source, non_blocking=True)
        done = torch.cuda.Event()
        done.record(stream)
        return cls(host, done)

    def wait(self) -> dict[str, np.ndarray]:
        """The host arrays, once every copy has landed."""
        if self._done is not None:
            self._done.synchronize()
        return {name: t.numpy() for name, t in self._host.items()}
