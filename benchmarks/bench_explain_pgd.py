"""Targeted PGD: cnnlab's ``pgd`` against torchattacks' ``PGD`` with the same settings, same run.

The trained embedded digit classifier (cnnlab trains and caches it on first use), test digits, each
with a random target class ≠ its label; L∞ ε = 0.2, α = 0.02, 20 steps, random start. Both work on
[0,1] pixels with the model's normalisation inside (torchattacks 3.5: ``set_normalization_used``,
which takes and returns *normalised* inputs and attacks their [0,1] inverse; cnnlab: per-channel
ε/std on the normalised input). The largest pixel change of each is printed as a check. Time includes the final forward pass that
decides success. Rows: cnnlab running every step (``early_stop=False``, torchattacks' semantics)
and cnnlab's default, which stops each image at its first success. Targets: same success rate,
time ratio ≤ 1.0.

Usage: python benchmarks/bench_explain_pgd.py [--images 500] [--repeats 3]
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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eps", type=float, default=0.2)
    ap.add_argument("--alpha", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
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
    times = {k: [] for k in runs}
    rates = {k: [] for k in runs}
    for f in runs.values():  # warm-up
        f()
    order = list(runs)
    for r in range(args.repeats):  # interleaved, in rotating order, so machine noise hits all of them
        for k in order[r % len(order):] + order[:r % len(order)]:
            f = runs[k]
            t0 = time.perf_counter()
            rates[k].append(f())
            times[k].append(time.perf_counter() - t0)
    ref = statistics.median(times["torchattacks PGD"])
    print(f"{len(x01)} digits, targeted, L∞ ε={args.eps:g}, α={args.alpha:g}, {args.steps} steps, random start; "
          f"median of {args.repeats}")
    print(f"{'method':>24} {'success':>8} {'max |Δpixel|':>13} {'time s':>8} {'ratio':>6}")
    for k in runs:
        t = statistics.median(times[k])
        print(f"{k:>24} {statistics.mean(rates[k]):>8.1%} {linf[k]:>13.4f} {t:>8.3f} {t / ref:>6.2f}")


if __name__ == "__main__":
    main()
