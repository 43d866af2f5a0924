"""Targeted PGD: cnnlab's ``pgd`` against torchattacks' ``PGD`` with the same settings, same run.

The trained embedded digit classifier (cnnlab trains and caches it on first use), test digits, each
with a random target class ≠ its label; L∞ ε = 0.2, α = 0.02, 20 steps, random start. Both work on
[0,1] pixels with the model's normalisation inside (torchattacks 3.5: ``set_normalization_used``,
which takes and returns *normalised* inputs and attacks their [0,1] inverse; cnnlab: per-channel
ε/std on the normalised input). The largest pixel change of each is printed as a check. Time includes the final forward pass that
decides success. Rows: cnnlab running every step (``early_stop=False``, torchattacks' semantics)
and cnnlab's default, which stops each image at its first success. Targets: same success rate,
time ratio ≤ 1.0 in both modes. The random starts differ (each library draws its own), so success
rates agree to about a percent, not exactly. Runs at a fixed torch thread count (``--threads``,
default 1); ratios are of medians over interleaved repeats in rotating order, of wall time and of this
process's CPU time (the steadier of the two when other jobs share the machine).

Usage: python benchmarks/bench_explain_pgd.py [--images 500] [--repeats 5] [--threads 1]
Needs the optional peers: pip install 'cnnlab[bench]'
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    ap.add_argument("--eps", type=float, default=0.2)
    ap.add_argument("--alpha", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import os

    import torchattacks

    from cnnlab.data import load_dataset
    from cnnlab.explain import pgd, random_targets
    from cnnlab.models.pretrained import digit_classifier

    bundle = digit_classifier()
    model = bundle.model.eval()
    ds = load_dataset("mnist-embedded", "test")
    idx = torch.linspace(0, len(ds) - 1, args.images).round().long()  # every class
    x01 = ds.images[idx].float() / 255
    y = ds.labels[idx]
    tgt = random_targets(y, 1, 10, generator=torch.Generator().manual_seed(0))[:, 0]
    mean, std = torch.tensor(bundle.mean).view(1, -1, 1, 1), torch.tensor(bundle.std).view(1, -1, 1, 1)

    def theirs():
        atk = torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=True)
        atk.set_normalization_used(mean=list(bundle.mean), std=list(bundle.std))
        atk.set_mode_targeted_by_label(quiet=True)
        adv = atk((x01 - mean) / std, tgt)  # normalised in, normalised out
        with torch.no_grad():
            rate = (model(adv).argmax(1) == tgt).float().mean().item()
        linf["torchattacks PGD"] = float((adv * std + mean - x01).abs().max())
        return rate

    linf: dict[str, float] = {}

    def ours(early_stop: bool, name: str):
        def f():
            res = pgd(bundle, bundle.preprocess(x01), eps=args.eps, alpha=args.alpha, steps=args.steps, norm="linf",
                      targets=tgt, labels=y, early_stop=early_stop, batch_size=len(x01),
                      generator=torch.Generator().manual_seed(0))
            linf[name] = float((res.images * std + mean - x01).abs().max())
            return res.success.float().mean().item()
        return f

    runs = {"torchattacks PGD": theirs, "cnnlab pgd (all steps)": ours(False, "cnnlab pgd (all steps)"),
            "cnnlab pgd (early stop)": ours(True, "cnnlab pgd (early stop)")}
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}  # this process's CPU time: less sensitive to other jobs on a shared machine
    rates = {k: [] for k in runs}
    for f in runs.values():  # warm-up
        f()
    order = list(runs)
    for r in range(args.repeats):  # interleaved, in rotating order, so machine noise hits all of them
        for k in order[r % len(order):] + order[:r % len(order)]:
            f = runs[k]
            t0, c0 = time.perf_counter(), time.process_time()
            rates[k].append(f())
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in runs}
    ref = med["torchattacks PGD"]
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{len(x01)} digits, targeted, L∞ ε={args.eps:g}, α={args.alpha:g}, {args.steps} steps, random start; "
          f"median of {args.repeats}; torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"{torch.get_num_threads()} thread(s), load average {load} on {os.cpu_count()} CPUs")
    print(f"{'method':>24} {'success':>8} {'max |Δpixel|':>13} {'wall s':>8} {'ratio':>6} {'cpu s':>8} {'ratio':>6}")
    for k in runs:
        w, c = med[k]
        print(f"{k:>24} {statistics.mean(rates[k]):>8.1%} {linf[k]:>13.4f} {w:>8.3f} {w / ref[0]:>6.2f} "
              f"{c:>8.3f} {c / ref[1]:>6.2f}")
    for i, what in enumerate(("wall", "cpu")):
        ok = all(med[k][i] <= ref[i] for k in runs)
        print(f"{what} time ratio ≤ 1.0 in both modes: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
