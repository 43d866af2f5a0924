"""Running unchanged under ``torchrun`` (torch.distributed: gloo on CPU, nccl on GPUs).

Everything here is a no-op in a single process, so the rest of cnnlab calls it unconditionally:

* ``init_from_env`` starts the process group when ``torchrun`` set ``WORLD_SIZE > 1``;
* ``shard`` gives each rank its slice of a global batch, so the effective batch size (and so the
  result) does not depend on the number of processes;
* ``attach_gradient_averaging`` makes every optimiser average gradients across ranks before it steps
  (what DDP does, but it also covers GAN and DANN steps that call several optimisers);
* ``all_reduce_mean`` reduces metrics; ``is_main`` gates every write to the run folder;
* ``run_once`` computes a single-process stage (the SVM sweep) on rank 0 and shares its result.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (once)."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return is_distributed()


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
    """This rank's part of a global batch (ranks get sizes that differ by at most one)."""
    if not is_distributed():
        return indices
    return indices[rank()::world_size()]


def broadcast_modules(modules) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not is_distributed():
        return
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            dist.broadcast(t.data, src=0)


def _average_grads(optimizer: torch.optim.Optimizer, *_args, **_kwargs) -> None:
    n = world_size()
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(n)


def attach_gradient_averaging(optimizers) -> list:
    """Register a pre-step hook on each optimiser that averages its gradients across ranks."""
    if not is_distributed():
        return []
    return [opt.register_step_pre_hook(_average_grads) for opt in optimizers]


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
