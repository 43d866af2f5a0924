"""Benchmark: drawing random in-memory batches one at a time vs ``gather_batches`` (64 at a time).

Between two draws the loop runs a real DANN training step (64 + 64 images, the course network), so
the data set is out of the caches as it is in training. Times only the drawing, both ways in the
same run, alternating blocks:

    python benchmarks/bench_gather_batches.py --data-root ../shared/data     # MNIST + MNIST-M (BSDS500)
    python benchmarks/bench_gather_batches.py                                # embedded data
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cnnlab.adapt.dann import dann_losses
from cnnlab.adapt.domains import load_domains, preprocess
from cnnlab.adapt.networks import DANNNet
from cnnlab.allocator import retain_freed_memory
from cnnlab.data import gather_batches, index_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=256, help="steps per block (each way)")
    ap.add_argument("--blocks", type=int, default=4)
    args = ap.parse_args()
    retain_freed_memory()
    d = load_domains("mnist" if args.data_root else "mnist-embedded", "mnistm", data_root=args.data_root)
    s_img, s_lab, t_img = d.source_train.images, d.source_train.labels, d.target_train.images
    net = DANNNet().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)

    def train_step(xs, ys, xt):
        out = dann_losses(net, preprocess(xs), ys, preprocess(xt), 0.5, "auto")
        opt.zero_grad(set_to_none=True)
        (out["class_loss"] + out["domain_loss"]).backward()
        opt.step()

    def epoch_indices():  # one epoch of DANN's (source, target) index batches, as train_adapt draws them
        return (index_batches(len(s_img), args.batch, generator=g, drop_last=True),
                index_batches(len(t_img), args.batch, generator=g, drop_last=True))

    def one_at_a_time():
        for i_s, i_t in zip(*epoch_indices()):
            yield s_img[i_s], s_lab[i_s], t_img[i_t]

    def grouped():
        src, tgt = epoch_indices()
        for (xs, ys), (xt,) in zip(gather_batches(src, s_img, s_lab), gather_batches(tgt, t_img)):
            yield xs, ys, xt

    per_step = {"one batch at a time (x[idx])": [], "gather_batches (64 batches a gather)": []}
    for _ in range(args.blocks):
        for (name, times), draw in zip(per_step.items(), (one_at_a_time, grouped)):
            it = draw()
            drawing = 0.0
            for _ in range(args.steps):
                t0 = time.perf_counter()
                batch = next(it)
                drawing += time.perf_counter() - t0
                train_step(*batch)
            times.append(drawing / args.steps * 1e3)
    print(f"domains: {d.summary()}; batch {args.batch} + {args.batch}; {args.steps} steps × {args.blocks} blocks each way")
    base = statistics.median(next(iter(per_step.values())))
    for name, times in per_step.items():
        med = statistics.median(times)
        print(f"{name:40s} {med:.3f} ms a step (blocks: {', '.join(f'{t:.3f}' for t in times)}), ratio {med / base:.2f}")


if __name__ == "__main__":
    main()
