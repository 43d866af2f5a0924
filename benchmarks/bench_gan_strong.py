"""Benchmark: the course's DCGAN/cDCGAN against cnnlab's beyond-the-course variants, side by side.

Every named variant of ``cnnlab gan sweep`` (or several joined by ``+``: ``ema+ttur``; a part
``key=value`` sets one setting: ``ema+batch_size=64``) (``default``, ``ema``, ``strong``, ``cdcgan``,
``cdcgan-strong``, …) is trained with the same seeds and budget; within a seed the variants run one
after the other, so a loaded machine slows them alike. Each trained G is judged by BOTH judges
(cnnlab's digitnet, seed 0, and the independent LeNet-5, seed 1) against the 10,000 MNIST test
digits, the FD averaged over ``--eval-sets`` noise sets of 2,000, next to the real-data floor
(2,000 real training digits through the same 32-px pipeline) and, for the cDCGAN's conditional accuracy, the
ceiling (each judge's accuracy on those real digits, and on the test digits). The column ``FD train`` measures the
same samples against 10,000 *training* digits with the first judge: the number the presets were
chosen on (docs/checks/part_d.md), so that no choice looks at test digits.

    python benchmarks/bench_gan_strong.py --data-root ../shared/data --variants default,strong --seeds 0,1,2
    python benchmarks/bench_gan_strong.py --data-root ../shared/data --variants cdcgan,cdcgan-strong \\
        --seeds 0,1,2 --widths 32,16     # the lab's cDCGAN widths (the course's take ~1 h a run on 2 CPU cores)

Prints one row per run, then mean ± std per variant and each variant's training-time ratio to the first
(``train s``: the training steps alone, as ``metrics.json`` counts them; ``wall s`` adds the per-epoch judging).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="folder holding MNIST/raw (needed for --dataset mnist)")
    p.add_argument("--dataset", default="mnist", choices=("mnist", "mnist-embedded"),
                   help="mnist (default), or the 5,000 embedded digits (offline; judges trained on them)")
    p.add_argument("--variants", default="default,strong", help="sweep variant names; the first is the reference")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--widths", default=None, help="NGF,NDF for the cdcgan variants (default: the course's 128,64)")
    p.add_argument("--eval-sets", type=int, default=3, help="noise sets of 2,000 the FD is averaged over")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="folder for the run folders (default: a temporary one)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from cnnlab.generate.judge import judge_metrics, load_judge, real_reference
    from cnnlab.generate.studies import variant_config
    from cnnlab.generate.train import GANConfig, config_from, load_gan_data, sample, train_gan

    if args.dataset == "mnist" and not (args.data_root and (Path(args.data_root) / "MNIST" / "raw").is_dir()):
        print(f"error: MNIST not found under {args.data_root}/MNIST/raw; pass --data-root", file=sys.stderr)
        return 2
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    base = GANConfig(dataset=args.dataset, judge=args.dataset, epochs=args.epochs, subset=args.subset)
    widths = dict(zip(("ngf", "ndf"), map(int, args.widths.split(",")))) if args.widths else {}

    def config(name):  # "a+b": variant a's overrides, then b's; a part "key=value" sets one GANConfig field
        import ast

        cfg = base
        for part in name.split("+"):
            if "=" in part:
                key, value = part.split("=", 1)
                cfg = config_from(cfg, **{key: ast.literal_eval(value)})
            else:
                cfg = variant_config(part, cfg)
        return variant_config("default", cfg, widths if cfg.model == "cdcgan" else None)

    configs = {n: config(n) for n in names}
    data = load_gan_data(args.dataset, size=32, data_root=args.data_root)
    judges = {"digitnet": load_judge(args.dataset, data_root=args.data_root),
              "lenet5": load_judge(args.dataset, data_root=args.data_root, second=True)}
    refs = {k: real_reference(j, data.test) for k, j in judges.items()}
    pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(12345))
    train_ref = real_reference(judges["digitnet"], data.train[pick[:min(10000, len(pick) - 2000)]])
    floors = {k: judge_metrics(j, data.train[pick[-2000:]], refs[k])["frechet"] for k, j in judges.items()}
    # the conditional accuracy real digits reach: each judge's accuracy on them (2,000 training, all test digits)
    ceilings = {k: (judge_metrics(j, data.train[pick[-2000:]], None, data.labels[pick[-2000:]])["cond_acc"],
                    judge_metrics(j, data.test, None, data.test_labels)["cond_acc"]) for k, j in judges.items()}
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-gan-strong-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs, "
          f"real-data floor: digitnet {floors['digitnet']:.2f}, lenet5 {floors['lenet5']:.2f}; conditional accuracy of "
          "real digits (training / test): " + ", ".join(f"{k} {a:.4f} / {b:.4f}" for k, (a, b) in ceilings.items()),
          flush=True)

    def judged(G, cfg, seed) -> dict:
        rows = []
        for k in range(args.eval_sets):
            z = torch.randn(2000, cfg.nz, generator=torch.Generator().manual_seed(1000 * seed + k + 1))
            y = torch.arange(2000) % 10 if cfg.model == "cdcgan" else None
            x = sample(G, z, y)
            row = {f"FD {j}": judge_metrics(judge, x, refs[j], y)["frechet"] for j, judge in judges.items()}
            m = judge_metrics(judges["digitnet"], x, train_ref, y)
            row["FD train"] = m["frechet"]
            if y is not None:
                row["cond acc digitnet"] = m["cond_acc"]
                row["cond acc lenet5"] = judge_metrics(judges["lenet5"], x, None, y)["cond_acc"]
            rows.append(row)
        return {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}

    results: dict[str, list[dict]] = {n: [] for n in names}
    for seed in seeds:
        for name, cfg in configs.items():
            t0 = time.perf_counter()
            res = train_gan(cfg, out=out / f"{name}-s{seed}", seed=seed, data=data, judge=judges["digitnet"],
                            figures=False, command=f"bench {name}")
            wall = time.perf_counter() - t0
            row = {"seed": seed, "wall s": wall, "train s": res.metrics["train_seconds"], **judged(res.G, cfg, seed),
                   "params G": res.metrics["params_G"], "params D": res.metrics["params_D"]}
            results[name].append(row)
            print(f"{name:16s} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "seed"),
                  flush=True)

    ref_train = statistics.fmean(r["train s"] for r in results[names[0]])
    print(f"\nmean ± std over seeds {args.seeds}; train-time ratio to {names[0]}")
    for name, rows in results.items():
        cells = []
        for k in rows[0]:
            if k == "seed":
                continue
            vals = [r[k] for r in rows]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{k} {statistics.fmean(vals):.4g} ± {sd:.2g}")
        ratio = statistics.fmean(r["train s"] for r in rows) / ref_train
        print(f"{name}: " + "; ".join(cells) + f"; train-time ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
