"""Batch-level preprocessing on tensors (no per-sample PIL work in training loops)."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor, *, size: int | None = None, channels: int | None = None,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> torch.Tensor:
    """uint8 B×C×H×W → float32 in [0,1]; optional channel replication (1→3, A-Q9), resize and
    normalisation ``(x − mean) / std``."""
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    if channels is not None and x.shape[1] != channels:
        if x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        elif channels == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise ValueError(f"cannot turn {x.shape[1]} channels into {channels}")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if mean is not None:
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - m) / s
    return x.contiguous()


def held_on(device: torch.device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The training set on the GPU once (uint8: MNIST is 47 MB), so that batches are gathered there with
    no host-to-device copy per step; on a CPU the tensors as they are."""
    if torch.device(device).type != "cuda":
        return tensors
    return tuple(t.to(device) for t in tensors)


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 8192) -> torch.Tensor:
    """Resize uint8 N×C×H×W once (bilinear, antialiased), in chunks to bound memory."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = [to_float(images[s:s + chunk], size=size).mul_(255).round_().clamp_(0, 255).to(torch.uint8)
           for s in range(0, len(images), chunk)]
    return torch.cat(out)


def index_batches(n: int, batch_size: int, *, generator: torch.Generator | None = None, shuffle: bool = True,
                  drop_last: bool = False, shard: bool = True, cycle: bool = False) -> Iterator[torch.Tensor]:
    """Index tensors for one epoch of in-memory batches (a seeded permutation when shuffling);
    ``cycle``: endless, a new permutation for each pass (the caller stops).

    Under torchrun every rank draws the same permutation and keeps its share of each global batch,
    so the effective batch size, and the result, do not depend on the number of processes
    (``shard=False``: whole batches, for a stage that one rank computes alone)."""
    from cnnlab import distributed

    if shard:
        distributed.check_batch_size(batch_size)
    stop = n - n % batch_size if drop_last else n
    while True:
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for s in range(0, stop, batch_size):
            yield distributed.shard(order[s:s + batch_size]) if shard else order[s:s + batch_size]
        if not cycle or stop == 0:
            return


def gather_batches(indices: Iterable[torch.Tensor], *tensors: torch.Tensor, chunk: int = 64,
                   max_bytes: int = 32 << 20) -> Iterator[tuple[torch.Tensor, ...]]:
    """``tuple(t[idx] for t in tensors)`` for each index batch, gathered up to ``chunk`` batches at a time.

    Every row of a random batch is a cache and TLB miss in a large in-memory set, and right after
    a training step little else overlaps them; one ``index_select`` for many batches amortises the
    misses (benchmarks/bench_gather_batches.py measures both ways). A group holds at most
    ``max_bytes`` of rows (but at least one batch), so large images (224×224 photos: 150 KB a row)
    are copied a batch at a time.
    The batches are the same (views of the group, in order), and no random number is drawn here.
    """
    row_bytes = sum(t[0].numel() * t.element_size() for t in tensors if len(t)) or 1
    max_rows = max(1, max_bytes // row_bytes)
    it = iter(indices)
    pending = next(it, None)
    while pending is not None:
        group, rows = [pending], len(pending)
        pending = next(it, None)
        while pending is not None and len(group) < chunk and rows + len(pending) <= max_rows:
            group.append(pending)
            rows += len(pending)
            pending = next(it, None)
        flat = torch.cat(group)
        parts = [t.index_select(0, flat.to(t.device)).split([len(i) for i in group]) for t in tensors]  # row memcpy
        yield from zip(*parts)
