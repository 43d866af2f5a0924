"""Running unchanged under ``torchrun`` (torch.distributed: gloo on CPU, nccl on GPUs).

Everything here is a no-op in a single process, so the rest of cnnlab calls it unconditionally:

* ``init_from_env`` starts the process group when ``torchrun`` set ``WORLD_SIZE > 1``;
* ``shard`` gives each rank an equal slice of a global batch, so the effective batch size (and so
  the result) does not depend on the number of processes;
* ``wrap`` turns a network into what a training step calls: under torchrun a
  ``DistributedDataParallel`` module (rank 0's weights broadcast once, gradients all-reduced in
  buckets during backward) whose BatchNorm layers are synchronised (``--sync-bn``, the default);
* ``all_reduce_mean`` reduces metrics; ``is_main`` gates every write to the run folder;
* ``run_once`` computes a single-process stage (the SVM sweep) on rank 0 and shares its result.
"""

from __future__ import annotations

import inspect
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn

from cnnlab.errors import CnnlabError

# Whether networks with BatchNorm get SyncBatchNorm under torchrun (the CLI's --sync-bn/--no-sync-bn).
SYNC_BN = True


def init_from_env(sync_bn: bool | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (once)."""
    global SYNC_BN
    if sync_bn is not None:
        SYNC_BN = sync_bn
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return is_distributed()


def lost_a_peer(e: BaseException) -> bool:
    """Whether ``e`` is what a collective raises on a rank that survives a failed one: torch's
    DistError, or gloo's plain RuntimeError from its TCP transport when the peer's connection closed."""
    text = str(e)
    return (isinstance(e, getattr(dist, "DistError", ())) or "gloo/transport" in text
            or "Connection closed by peer" in text or "Connection reset by peer" in text)


def rank_prefix() -> str:
    """``"rank 1: "`` under torchrun (for error lines), ``""`` in one process."""
    return f"rank {rank()}: " if is_distributed() else ""


def wait_before_reporting(seconds: float = 3.0) -> None:
    """A rank other than 0 waits a moment before printing its error: when every rank fails the same way
    (bad input), rank 0 reports it and torchrun stops the others within 0.1 s, so the error is printed
    once; a failure of this rank alone is still printed, a few seconds later."""
    if is_distributed() and not is_main():
        time.sleep(seconds)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's equal part of a global batch. Every rank holds the same global batch, so the shards
    partition it. A final batch whose size is not a multiple of the world size loses its last few
    (fewer than the world size) images, so that every shard, and so its weight in DDP's gradient
    average, is the same: the average is then the global batch's gradient."""
    if not is_distributed():
        return indices
    n = world_size()
    keep = len(indices) - len(indices) % n
    return indices[:keep][rank()::n]


def seed_ranks_apart(generator: torch.Generator) -> None:
    """Under torchrun, at the start of each epoch: give every rank its own global torch RNG stream, so
    that dropout masks (drawn per rank, for its share of the batch) are independent across ranks
    instead of the same on every rank. The seed comes from the run's generator, which every rank holds
    in the same state and checkpoints save, without advancing it: a resumed run draws the same masks.
    (Such masks cannot equal one process's, so a network with dropout matches one process only in
    distribution.)"""
    if not is_distributed():
        return
    g = torch.Generator()
    g.set_state(generator.get_state())
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)) + rank())


def check_batch_size(batch_size: int, what: str = "--batch-size") -> None:
    """Under torchrun a global batch is split into equal shards: its size must be a multiple of the world size."""
    n = world_size()
    if batch_size % n:
        raise CnnlabError(f"{what} {batch_size} cannot be split into equal shards for {n} processes; use a "
                          f"multiple of {n} (e.g. {max(n, batch_size - batch_size % n)})")


class CallMethod(nn.Module):
    """``module.<method>`` as a forward, so that DDP can wrap a network that a training step calls
    through another method (a GAN discriminator's logits, DANN's two heads)."""

    def __init__(self, module: nn.Module, method: str):
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.module, self.method)(*args, **kwargs)


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over ranks, differentiable: each rank's input reaches every rank's output,
    so the gradient of an input is the sum over ranks of the outputs' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm with its batch statistics computed over every rank, on CPU (gloo), where torch's
    SyncBatchNorm has no kernel (and DDP refuses it on CPU modules). The per-channel sums are added
    across ranks with a differentiable all-reduce, so the gradients of the batch mean and variance
    flow back to every rank's inputs, as in torch's CUDA kernel. In eval mode, or in one process, it
    is the BatchNorm it replaced; parameters, buffers and state-dict keys are the same."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        c = x.shape[1]
        xf = x if x.dtype == torch.float64 else x.float()  # statistics in fp32 at least (bf16 under autocast)
        local = torch.cat([xf.sum(dims), (xf * xf).sum(dims), xf.new_tensor([xf.numel() / c])])
        total = _SumOverRanks.apply(local)
        count = total[-1]
        mean = total[:c] / count
        var = (total[c:2 * c] / count - mean * mean).clamp_min(0)  # biased: what normalises the batch
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * (n / max(n - 1, 1)), alpha=m)  # unbiased, as BatchNorm
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm layer inside ``module`` with statistics over all ranks, in place: torch's
    SyncBatchNorm on GPUs, :class:`CpuSyncBatchNorm` on CPU. Parameters, buffers and state-dict keys
    stay the same."""
    dev = next(module.parameters()).device
    if dev.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for m in module.modules():
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
            m.__class__ = CpuSyncBatchNorm
    return module


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def wrap(module: nn.Module, method: str | None = None, *, find_unused: bool = False):
    """What a training step calls for ``module`` (its forward, or ``method``). Under torchrun: the
    network in DistributedDataParallel, which broadcasts rank 0's weights once and averages the
    gradients during backward, with synchronised BatchNorm when SYNC_BN is set (``find_unused``: some
    parameters get no gradient in a step, e.g. DANN's domain head when training source-only). In one
    process: the module (or its bound method) itself."""
    if not is_distributed() or not any(p.requires_grad for p in module.parameters()):
        return getattr(module, method) if method else module
    from torch.nn.parallel import DistributedDataParallel as DDP

    sync = SYNC_BN and has_batchnorm(module)
    if sync:
        convert_sync_batchnorm(module)
    dev = next(module.parameters()).device
    # BatchNorm statistics: synchronised in the forward pass (SyncBatchNorm), or rank 0's broadcast
    buffers = ({"forward_sync_buffers": not sync} if "forward_sync_buffers" in inspect.signature(DDP).parameters
               else {"broadcast_buffers": not sync})
    return DDP(CallMethod(module, method) if method else module, device_ids=[dev] if dev.type == "cuda" else None,
               find_unused_parameters=find_unused, **buffers)


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean of each float over ranks (a no-op in one process)."""
    if not is_distributed() or not values:
        return values
    keys = sorted(k for k, v in values.items() if isinstance(v, (int, float)))
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    out = dict(values)
    out.update({k: v / world_size() for k, v in zip(keys, t.tolist())})
    return out


def run_once(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` computed on rank 0 only and its (picklable) result sent to every rank:
    for single-process stages such as the SVM sweep, which the other ranks would only repeat."""
    if not is_distributed():
        return fn(*args, **kwargs)
    box = [fn(*args, **kwargs) if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
