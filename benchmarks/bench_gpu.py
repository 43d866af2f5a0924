"""GPU benchmark: per-step times of the course's small networks and whole-protocol times, on the CUDA
device that is present (or a line saying that there is none).

Per step (DANN: 64 source + 64 target images; DCGAN: one D and one G step on 128 images), each way
measured in this one run, after a warm-up, with the device synchronised around the timed steps:

* eager fp32, eager bf16 autocast (what ``--precision auto`` picks on a GPU with bf16);
* ``torch.compile(mode="reduce-overhead")`` (CUDA graphs) of the networks, bf16.

The ratios tell which way the training loops should take for these launch-bound networks.
With ``--data-root`` (MNIST and BSDS500), whole protocols as a user runs them, each in a fresh process:
``cnnlab adapt`` (the course's DANN protocol), ``cnnlab gan train`` (5 epochs) and ``cnnlab lab``
(the embedded default).

    python benchmarks/bench_gpu.py                          # per-step only
    python benchmarks/bench_gpu.py --data-root DATA         # and the whole protocols
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F


def _sync(dev) -> None:
    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize()


def _time_steps(step, n: int, dev, warmup: int = 20) -> float:
    for _ in range(warmup):
        step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    _sync(dev)
    return (time.perf_counter() - t0) / n * 1e3


def dann_step_factory(dev, bf16: bool, compiled: bool):
    from cnnlab.adapt.networks import DANNNet

    net = DANNNet().to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, fused=True)
    outputs = torch.compile(net.dann_outputs, mode="reduce-overhead") if compiled else net.dann_outputs
    x = torch.randn(128, 3, 28, 28, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,), device=dev)
    d = torch.cat([torch.ones(64, device=dev), torch.zeros(64, device=dev)])

    def step():
        with torch.autocast(torch.device(dev).type, dtype=torch.bfloat16, enabled=bf16):
            logits, dl = outputs(x, 64, 0.5)
        loss = F.cross_entropy(logits.float(), y) + F.binary_cross_entropy_with_logits(dl.float(), d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def dcgan_step_factory(dev, bf16: bool, compiled: bool):
    from cnnlab.generate.networks import build_gan
    from cnnlab.generate.steps import d_step, g_step
    from cnnlab.precision import autocast

    G, D = build_gan("dcgan")
    G.to(dev, memory_format=torch.channels_last)
    D.to(dev, memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(G.parameters(), lr=5e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g_fwd = torch.compile(G, mode="reduce-overhead") if compiled else G
    d_logits = torch.compile(D.logits, mode="reduce-overhead") if compiled else None
    real = torch.rand(128, 1, 32, 32, device=dev) * 2 - 1
    z = torch.randn(128, 100, device=dev)

    def forward():
        return autocast(torch.device(dev), bf16)

    def step():
        with forward():
            fake = g_fwd(z)
        d_step(D, opt_d, real, fake, forward=forward, logits_of=d_logits)
        g_step(D, opt_g, fake, forward=forward)
    return step


def per_step(dev, n: int) -> None:
    print(f"{'network':8s} {'way':36s} {'ms/step':>9s} {'vs eager fp32':>14s}")
    for name, factory in (("DANN", dann_step_factory), ("DCGAN", dcgan_step_factory)):
        base = None
        ways = (("eager fp32", False, False), ("eager bf16 autocast", True, False),
                ("compile reduce-overhead, bf16", True, True))
        for label, bf16, compiled in ways if torch.device(dev).type == "cuda" else ways[:1]:
            try:
                ms = _time_steps(factory(dev, bf16, compiled), n, dev)
            except Exception as e:  # a compiler that is missing or fails: say so, keep measuring
                print(f"{name:8s} {label:36s} failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
                continue
            base = base or ms
            print(f"{name:8s} {label:36s} {ms:9.3f} {base / ms:13.2f}x")


def protocols(data_root: str) -> None:
    runs = [("cnnlab adapt (course protocol)", ["adapt", "--data-root", data_root]),
            ("cnnlab gan train (5 epochs, MNIST)", ["gan", "train", "--data-root", data_root]),
            ("cnnlab lab (embedded default)", ["lab"])]
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        env = dict(os.environ, CNNLAB_CACHE=os.path.join(tmp, "cache"), CNNLAB_PROGRESS="0")
        for label, argv in runs:
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "cnnlab"] + argv + ["--out", os.path.join(tmp, argv[0])], env=env,
                               capture_output=True, text=True)
            wall = time.perf_counter() - t0
            status = "ok" if r.returncode == 0 else f"rc {r.returncode}: {r.stderr.strip().splitlines()[-1:]}"
            print(f"{label:40s} {wall:8.1f} s  {status}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None, help="MNIST and BSDS500 for the whole-protocol times")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per way")
    ap.add_argument("--cpu-smoke", action="store_true", help="run the eager fp32 steps on the CPU (checks the script)")
    args = ap.parse_args()
    if args.cpu_smoke:
        per_step("cpu", args.steps)
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to measure (run this on a machine with a GPU)")
        return 0
    dev = "cuda"
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    per_step(dev, args.steps)
    if args.data_root:
        protocols(args.data_root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
