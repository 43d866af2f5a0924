"""Benchmark: the course DANN protocol with cnnlab vs a course-notebook-style loop, in the same run.

Protocol (course): source-only 10 epochs of 128, DANN 20 epochs of 64 + 64, SGD momentum 0.9,
lr 0.01/(1+10p)^0.75 per epoch, λ = 2/(1+e^(−2p))−1 per batch, test accuracies every epoch.

Reference ("notebook"): what the course notebook does: torch ``Dataset``s that build a PIL image per
sample and apply ``ToTensor`` + ``Normalize`` (MNIST replicated to 3 channels), ``DataLoader``s
(shuffle, num_workers=0), zip of the two loaders, fp32, evaluation through the same loaders.
cnnlab: in-memory uint8 tensors, batches gathered 64 at a time, one feature pass for both domains, channels_last,
optional bf16 autocast, and its richer per-epoch evaluation (source validation, DEV, entropy, domain).
Both run in this one process after ``retain_freed_memory()`` (what the ``cnnlab`` command does), so the
reference gets the allocator tuning too: the ratio measures the training loops, not malloc.

    python benchmarks/bench_adapt_dann.py --data-root ../shared/data --precision bf16   # full protocol
    python benchmarks/bench_adapt_dann.py --data-root ../shared/data --precision bf16 --subset 6000 --epochs-scale 0.25
    python benchmarks/bench_adapt_dann.py --precision fp32,bf16 --sequential             # embedded data

By default the two alternate epoch by epoch (a notebook epoch after each cnnlab epoch, timed
apart), so that a drift of the machine's speed over minutes falls on both; ``--sequential`` runs
one whole training after the other, as sessions 2–4 did.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cnnlab.adapt.dann import course_config, train_adapt
from cnnlab.adapt.domains import load_domains
from cnnlab.adapt.grl import grad_reverse
from cnnlab.allocator import retain_freed_memory

MEAN, STD = 0.13066, 0.30811


# --------------------------------------------------------------------------- the notebook-style reference
class DigitsDataset(Dataset):
    """Per-sample PIL + ToTensor + Normalize, as a course notebook does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.x = images.permute(0, 2, 3, 1).numpy()  # N×H×W×C uint8, like the arrays a notebook loads
        self.y = labels.numpy()
        self.tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,) * 3, (STD,) * 3)])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        a = self.x[i]
        img = Image.fromarray(a[:, :, 0], mode="L").convert("RGB") if a.shape[2] == 1 else Image.fromarray(a)
        return self.tf(img), int(self.y[i])


class NotebookDANN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, 48, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Linear(2352, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                                        nn.Linear(100, 10))
        self.domain = nn.Sequential(nn.Linear(2352, 100), nn.ReLU(), nn.Linear(100, 1))

    def forward(self, x, factor=1.0):
        f = self.features(x).view(x.shape[0], -1)
        return self.classifier(f), self.domain(grad_reverse(f, factor))


def notebook_eval(model, loader):
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in loader:
            logits, _ = model(x)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    model.train()
    return correct / n


def notebook_epochs(d, *, epochs: int, batch: int, dann: bool, seed: int):
    """The notebook's training, one epoch per ``next()``; yields (source, target) test accuracy."""
    torch.manual_seed(seed)
    model = NotebookDANN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    src = DataLoader(DigitsDataset(d.source_train.images, d.source_train.labels), batch_size=batch, shuffle=True)
    tgt = DataLoader(DigitsDataset(d.target_train.images, d.target_train.labels), batch_size=batch, shuffle=True)
    s_test = DataLoader(DigitsDataset(d.source_test.images, d.source_test.labels), batch_size=256)
    t_test = DataLoader(DigitsDataset(d.target_test.images, d.target_test.labels), batch_size=256)
    steps = min(len(src), len(tgt))
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = 0.01 / (1 + 10 * epoch / epochs) ** 0.75
        if dann:
            for i, ((xs, ys), (xt, _)) in enumerate(zip(src, tgt)):
                p = (epoch * steps + i) / (epochs * steps)
                factor = 2 / (1 + math.exp(-2 * p)) - 1
                logits, dom = model(torch.cat([xs, xt]), factor)
                d_true = torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))])
                loss = F.cross_entropy(logits[:len(xs)], ys) + F.binary_cross_entropy_with_logits(dom[:, 0], d_true)
                opt.zero_grad()
                loss.backward()
                opt.step()
        else:
            for xs, ys in src:
                logits, _ = model(xs)
                loss = F.cross_entropy(logits, ys)
                opt.zero_grad()
                loss.backward()
                opt.step()
        yield notebook_eval(model, s_test), notebook_eval(model, t_test)


def notebook_settings(method: str) -> dict:
    """The course's batch and loss for ``method``: source-only 128 images, DANN 64 + 64 with the domain loss."""
    return {"batch": 128 if method == "source_only" else 64, "dann": method == "dann"}


def notebook_train(d, *, epochs: int, batch: int, dann: bool, seed: int) -> dict:
    t0 = time.perf_counter()
    for accs in notebook_epochs(d, epochs=epochs, batch=batch, dann=dann, seed=seed):
        pass
    return {"seconds": time.perf_counter() - t0, "source_acc": accs[0], "target_acc": accs[1]}


# --------------------------------------------------------------------------- cnnlab
def cnnlab_train(d, *, method: str, epochs: int, seed: int, precision: str, out, on_epoch_end=None) -> dict:
    t0 = time.perf_counter()
    res = train_adapt(d, course_config(method, epochs=epochs, seed=seed, precision=precision), out=out,
                      name=f"{method}-{precision}", on_epoch_end=on_epoch_end)
    last = res.history[-1]
    return {"seconds": time.perf_counter() - t0, "source_acc": last["source_test_acc"],
            "target_acc": last["target_test_acc"]}


def interleaved(d, *, method: str, epochs: int, seed: int, precision: str, out) -> tuple[dict, dict]:
    """Both trainings, one notebook epoch after each cnnlab epoch: the machine's speed drifts by
    10–30% over minutes on these VMs, and alternating epochs puts both under the same drift."""
    nb = notebook_epochs(d, epochs=epochs, seed=seed, **notebook_settings(method))
    nb_seconds, nb_accs = [], []

    def one_notebook_epoch(row):
        t0 = time.perf_counter()
        nb_accs.append(next(nb))
        nb_seconds.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    ours = cnnlab_train(d, method=method, epochs=epochs, seed=seed, precision=precision, out=out,
                        on_epoch_end=one_notebook_epoch)
    ours["seconds"] = time.perf_counter() - t0 - sum(nb_seconds)  # cnnlab's wall time, the notebook's taken out
    ref = {"seconds": sum(nb_seconds), "source_acc": nb_accs[-1][0], "target_acc": nb_accs[-1][1]}
    return ref, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None, help="folder with MNIST/ and BSDS500/ (default: embedded data)")
    ap.add_argument("--subset", type=int, default=None, help="at most N images per split")
    ap.add_argument("--epochs-scale", type=float, default=1.0, help="multiply the course epochs (10, 20) by this")
    ap.add_argument("--precision", default="bf16", help="cnnlab precision to time (a comma list with --sequential)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sequential", action="store_true",
                    help="run the notebook's whole training, then cnnlab's (default: alternate their epochs, "
                         "so that both see the same drift of the machine's speed; one precision only)")
    args = ap.parse_args()
    if not args.sequential and "," in args.precision:
        ap.error("alternating epochs times one cnnlab precision: give --precision bf16 (or fp32), or --sequential")
    retain_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    d = load_domains("mnist" if args.data_root else "mnist-embedded", "mnistm", data_root=args.data_root,
                     subset=args.subset)
    ep = {"source_only": max(1, round(10 * args.epochs_scale)), "dann": max(1, round(20 * args.epochs_scale))}
    order = "sequential" if args.sequential else "alternating epochs"
    print(f"domains: {d.summary()}; epochs {ep}; threads {torch.get_num_threads()}; {order}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("source_only", "dann"):
            if args.sequential:
                ref = notebook_train(d, epochs=ep[method], seed=args.seed, **notebook_settings(method))
                ours = [(prec, cnnlab_train(d, method=method, epochs=ep[method], seed=args.seed, precision=prec,
                                            out=tmp)) for prec in args.precision.split(",")]
            else:
                ref, r = interleaved(d, method=method, epochs=ep[method], seed=args.seed, precision=args.precision,
                                     out=tmp)
                ours = [(args.precision, r)]
            rows.append({"method": method, "impl": "notebook (PIL/ToTensor per sample, fp32)", **ref, "epochs": ep[method]})
            print(rows[-1], flush=True)
            for prec, r in ours:
                rows.append({"method": method, "impl": f"cnnlab ({prec})", **r, "epochs": ep[method]})
                print(rows[-1], flush=True)
    print()
    print("| method | implementation | epochs | seconds | epochs/s | wall-time ratio vs notebook | source acc | target acc |")
    print("|---|---|---|---|---|---|---|---|")
    ref_s = {r["method"]: r["seconds"] for r in rows if r["impl"].startswith("notebook")}
    for r in rows:
        print(f"| {r['method']} | {r['impl']} | {r['epochs']} | {r['seconds']:.1f} | {r['epochs'] / r['seconds']:.3f} | "
              f"{r['seconds'] / ref_s[r['method']]:.2f} | {r['source_acc']:.4f} | {r['target_acc']:.4f} |")
    for impl in sorted({r["impl"] for r in rows}):
        tot = sum(r["seconds"] for r in rows if r["impl"] == impl)
        print(f"total {impl}: {tot:.1f} s (ratio {tot / sum(ref_s.values()):.2f} of the notebook's wall time)")


if __name__ == "__main__":
    main()
