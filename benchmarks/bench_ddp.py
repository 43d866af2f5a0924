"""Benchmark: a training step under 2 gloo processes, DistributedDataParallel against the hand-written
per-parameter gradient averaging that cnnlab used before (one blocking all-reduce per parameter
before the optimiser step), in the same run.

Both ways train the same network on the same shards, alternating blocks of steps so that a drift of
the machine's speed falls on both. Networks: the course's DANN network (64 + 64 images per global
step) and the default DCGAN (D and G steps on 128 images). One thread per process, as torchrun sets.

    python benchmarks/bench_ddp.py                 # 2 processes on this machine
    python benchmarks/bench_ddp.py --steps 60
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F


def _average_grads(optimizer, *_args, **_kwargs) -> None:
    """The reference: what cnnlab did before DDP (an optimiser pre-step hook)."""
    n = dist.get_world_size()
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad.div_(n)


def _dann(way: str):
    from cnnlab.adapt.networks import DANNNet
    from cnnlab.distributed import wrap

    torch.manual_seed(0)
    net = DANNNet().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    if way == "ddp":
        outputs = wrap(net, "dann_outputs")
    else:
        outputs = net.dann_outputs
        opt.register_step_pre_hook(_average_grads)
    x = torch.randn(64, 3, 28, 28).contiguous(memory_format=torch.channels_last)  # this rank's 32 + 32
    y = torch.randint(0, 10, (32,))
    d = torch.cat([torch.ones(32), torch.zeros(32)])

    def step():
        logits, dl = outputs(x, 32, 0.5)
        loss = F.cross_entropy(logits, y) + F.binary_cross_entropy_with_logits(dl, d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _dcgan(way: str):
    from cnnlab.distributed import wrap
    from cnnlab.generate.networks import build_gan
    from cnnlab.generate.steps import d_step, g_step

    torch.manual_seed(0)
    G, D = build_gan("dcgan")
    opt_g = torch.optim.Adam(G.parameters(), lr=5e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    if way.startswith("ddp"):
        from cnnlab import distributed

        distributed.SYNC_BN = way == "ddp+syncbn"
        g_fwd, d_logits = wrap(G), wrap(D, "logits")
    else:
        g_fwd, d_logits = G, None
        opt_g.register_step_pre_hook(_average_grads)
        opt_d.register_step_pre_hook(_average_grads)
    real = torch.rand(64, 1, 32, 32) * 2 - 1  # this rank's half of 128
    z = torch.randn(64, 100)

    def step():
        fake = g_fwd(z)
        d_step(D, opt_d, real, fake, logits_of=d_logits)
        g_step(D, opt_g, fake)
    return step


def _worker(rank: int, port: int, steps: int, blocks: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for name, factory in (("DANN", _dann), ("DCGAN", _dcgan)):
            ways = ("hand-written", "ddp") + (("ddp+syncbn",) if name == "DCGAN" else ())
            fns = {way: factory(way) for way in ways}
            for fn in fns.values():
                for _ in range(3):
                    fn()  # warm-up
            spent = {way: 0.0 for way in fns}
            for _ in range(blocks):
                for way, fn in fns.items():
                    dist.barrier()
                    t0 = time.perf_counter()
                    for _ in range(steps // blocks):
                        fn()
                    dist.barrier()
                    spent[way] += time.perf_counter() - t0
            if rank == 0:
                out.put((name, {w: s / (steps // blocks * blocks) * 1e3 for w, s in spent.items()}))
    finally:
        dist.destroy_process_group()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="timed steps per way and network")
    ap.add_argument("--blocks", type=int, default=4, help="alternating blocks")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mp.spawn(_worker, args=(port, args.steps, args.blocks, q), nprocs=2, join=True)
    print(f"2 gloo processes, 1 thread each, {os.cpu_count()} CPUs")
    print(f"{'network':8s} {'hand-written ms/step':>22s} {'DDP ms/step':>12s} {'DDP / hand-written':>19s} "
          f"{'DDP+SyncBN ms/step':>19s}")
    while not q.empty():
        name, ms = q.get()
        sync = f"{ms['ddp+syncbn']:19.2f}" if "ddp+syncbn" in ms else f"{'(no BatchNorm)':>19s}"
        print(f"{name:8s} {ms['hand-written']:22.2f} {ms['ddp']:12.2f} {ms['ddp'] / ms['hand-written']:19.2f} {sync}")
    print("DDP / hand-written <= 1: DDP is at least as fast at the same maths (goal of issue 14); SyncBatchNorm "
          "(the default under torchrun) adds one all-reduce per BatchNorm layer and makes the result independent "
          "of the number of processes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
