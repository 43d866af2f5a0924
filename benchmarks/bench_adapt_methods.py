"""Benchmark: Part C's adaptation methods side by side on one or more domain pairs (issue 17).

For every pair and seed, each method is trained with ``cnnlab adapt``'s settings (course_config: the
course's DANN, VADA's fixed defaults, source-only and the target-only oracle), one after the other, so a
loaded machine slows them alike. Prints one row per run: wall seconds (training + per-epoch evaluation),
the target test accuracy at the last epoch, at each label-free pick (source validation accuracy, DEV,
target entropy) and at the oracle's pick, then every method's wall-time ratio to the first one. A row
"across" gives each rule's pick among every epoch and round of every method that never saw a target
label (what ``cnnlab adapt`` reports as its model selection). ``--histories F`` keeps every per-epoch
row (all label-free scores) in F, so that another selection rule can be scored later without training.

    python benchmarks/bench_adapt_methods.py --data-root ../shared/data --targets mnistm --methods dann,vada
    python benchmarks/bench_adapt_methods.py --targets mnistm --photos embedded --subset 10000 --epochs 5
    python benchmarks/bench_adapt_methods.py --data-root ../shared/data --targets digits --histories d.json
    python benchmarks/bench_adapt_methods.py --rescore d.json      # the rules' picks again, no training

Target labels are read only to report accuracies; nothing here chooses a setting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace

import torch

from cnnlab.adapt import selection
from cnnlab.adapt.dann import METHODS, course_config, train_adapt
from cnnlab.adapt.dirtt import RefineConfig, refine
from cnnlab.adapt.domains import load_domains


def _picks(row: dict, history: list[dict], key: str) -> dict:
    """``row`` plus the target test accuracy at the last epoch/round and at each rule's pick; printed."""
    row["last"] = history[-1]["target_test_acc"]
    for c in selection.LABEL_FREE + ("target_test_acc",):
        pick = selection.select_epoch(history, c, key=key)
        row[c] = pick["target_test_acc"]
        row[f"{c}@"] = pick[key]
    print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    return row


def _trace(row: dict) -> None:
    """One line per epoch: a late collapse shows here before the summary row."""
    keys = ("source_val_acc", "target_test_acc", "domain_acc")
    print(f"    epoch {row['epoch']:2d}  " + "  ".join(f"{k} {row[k]:.4f}" for k in keys if k in row), flush=True)


def _across(target: str, seed: int, runs: list[dict]) -> None:
    """Each rule's pick among every epoch/round of every method that never saw a target label; printed."""
    pool = {r["method"]: (r["history"], r["unit"]) for r in runs if r["method"] != "target_only"}
    if len(pool) < 2:
        return
    picks = {c: selection.pick_across(pool, c) for c in selection.LABEL_FREE + ("target_test_acc",)}
    print(f"target {target}  seed {seed}  across {','.join(pool)}  " + "  ".join(
        f"{c} {p['target_test_acc']:.4f} ({p['model']} {p['at']})" for c, p in picks.items() if p), flush=True)


def _rescore(path: str) -> int:
    """The rules' picks (per run and across methods) on saved histories: a new rule costs no training."""
    with open(path) as f:
        runs = json.load(f)
    for r in runs:
        _picks({k: r[k] for k in ("target", "seed", "method", "wall_s")}, r["history"], r["unit"])
    for target, seed in dict.fromkeys((r["target"], r["seed"]) for r in runs):
        _across(target, seed, [r for r in runs if (r["target"], r["seed"]) == (target, seed)])
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="folder with MNIST/raw and BSDS500 (default: embedded data)")
    p.add_argument("--source", default=None, help="default: mnist with --data-root, else mnist-embedded")
    p.add_argument("--targets", default="mnistm", help="comma list of targets (mnistm, mnistm-0.875, digits, ...)")
    p.add_argument("--photos", default=None, help="MNIST-M backgrounds: bsds500, embedded, a folder (default: auto)")
    p.add_argument("--methods", default="dann,vada", help="comma list; the first is the time reference")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", type=int, default=None, help="epochs of every method (default: each one's own)")
    p.add_argument("--subset", type=int, default=None, help="at most N images per split")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--dirtt-rounds", type=int, default=0, help="also refine VADA's last epoch with DIRT-T rounds")
    p.add_argument("--histories", default=None, metavar="FILE", help="write every run's per-epoch rows (JSON)")
    p.add_argument("--rescore", default=None, metavar="FILE",
                   help="train nothing: score the selection rules on the runs that --histories wrote to FILE")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="override one setting of one method, e.g. vada.target_weight=0.1 (repeatable)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rescore:
        return _rescore(args.rescore)
    methods = [m.strip().replace("-", "_") for m in args.methods.split(",") if m.strip()]
    if bad := [m for m in methods if m not in METHODS]:
        p.error(f"unknown method {bad[0]}; choose from {', '.join(METHODS)}")
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        method, _, field = key.partition(".")
        kind = type(getattr(course_config(method), field))
        parsed = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)  # bool("false") is True
        overrides.setdefault(method, {})[field] = parsed
    source = args.source or ("mnist" if args.data_root else "mnist-embedded")
    print(f"threads {torch.get_num_threads()}; overrides {overrides}", flush=True)
    rows, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            d = load_domains(source, target, data_root=args.data_root, photos=args.photos, subset=args.subset)
            print(f"pair {source} -> {target}: {d.summary()}", flush=True)
            for seed in (int(s) for s in args.seeds.split(",")):
                for method in methods:
                    cfg = replace(course_config(method, seed=seed), **overrides.get(method, {}))
                    if args.epochs:
                        cfg = replace(cfg, epochs=args.epochs)
                    t0 = time.perf_counter()
                    res = train_adapt(d, cfg, out=f"{tmp}/{target}-{seed}", name=method, on_epoch_end=_trace)
                    row = {"target": target, "seed": seed, "method": method, "wall_s": time.perf_counter() - t0}
                    rows.append(_picks(row, res.history, "epoch"))
                    runs.append({**row, "unit": "epoch", "history": res.history})
                    if method == "vada" and args.dirtt_rounds:
                        t1 = time.perf_counter()
                        rr = refine(res.load_epoch(cfg.epochs), d, RefineConfig(rounds=args.dirtt_rounds, seed=seed),
                                    out=f"{tmp}/{target}-{seed}", name="dirtt")
                        row = {"target": target, "seed": seed, "method": "vada+dirtt",
                               "wall_s": row["wall_s"] + time.perf_counter() - t1}
                        rows.append(_picks(row, rr, "round"))
                        runs.append({**row, "unit": "round", "history": rr})
                _across(target, seed, [r for r in runs if (r["target"], r["seed"]) == (target, seed)])
                if args.histories:
                    with open(args.histories, "w") as f:
                        json.dump(runs, f, default=float)
    print("\nmean ± sd over seeds (target test accuracy; wall-time ratio to the first method)")
    for target in args.targets.split(","):
        ref = [r["wall_s"] for r in rows if r["target"] == target and r["method"] == methods[0]]
        for method in methods + (["vada+dirtt"] if "vada" in methods and args.dirtt_rounds else []):
            rs = [r for r in rows if r["target"] == target and r["method"] == method]
            cells = []
            for k in ("last",) + selection.LABEL_FREE + ("target_test_acc",):
                v = [r[k] for r in rs]
                cells.append(f"{k} {statistics.mean(v):.4f}" + (f" ± {statistics.stdev(v):.4f}" if len(v) > 1 else ""))
            ratio = statistics.mean(r["wall_s"] for r in rs) / statistics.mean(ref)
            print(f"{target:14s} {method:12s} " + "  ".join(cells) + f"  time x{ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
