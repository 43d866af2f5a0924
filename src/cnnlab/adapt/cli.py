"""``cnnlab adapt`` (the DANN protocol, studies) and ``cnnlab mnistm`` (build MNIST-M)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from cnnlab.adapt.dann import ADVERSARIES, EPOCH_LENGTHS, VADA_DEFAULTS
from cnnlab.adapt.selection import LABEL_FREE
from cnnlab.errors import CnnlabError
from cnnlab.precision import PRECISIONS

log = logging.getLogger("cnnlab")

STUDIES = ("no-grl", "lambda", "tsne")
DRY_SUBSET = 512


def _domain_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("domains")
    g.add_argument("--source", default=None,
                   help="source dataset (labelled): mnist, mnist-embedded, digits, imagefolder:PATH… "
                        "(default: mnist with --data-root, else mnist-embedded)")
    g.add_argument("--target", default="mnistm",
                   help="target dataset (labels unused): mnistm (built from the source digits), mnistm-0.875 (the same "
                        "with digits 0.875x smaller), or any dataset name (e.g. digits: UCI 8x8 digits upsampled). "
                        "--source mnistm --target mnist reverses the pair")
    g.add_argument("--photos", default="auto",
                   help="MNIST-M backgrounds: auto (BSDS500 under --data-root, else embedded), bsds500, embedded, or a folder")
    g.add_argument("--mnistm-seed", type=int, default=42, help="seed of the MNIST-M builder (default: 42, the course's)")
    g.add_argument("--subset", type=int, default=None, help="use at most N images of every split (quick runs)")
    g.add_argument("--val-size", type=int, default=5000,
                   help="labelled source images held out for model selection (at most a tenth of the source train set)")


def _load_domains(args):
    from cnnlab.adapt.domains import load_domains

    source = args.source or ("mnist" if args.data_root else "mnist-embedded")
    subset = args.subset if args.subset is not None else (DRY_SUBSET if args.dry_run else None)
    return load_domains(source, args.target, data_root=args.data_root, download=args.download, photos=args.photos,
                        mnistm_seed=args.mnistm_seed, val_size=args.val_size, subset=subset)


def _method_list(text: str) -> tuple[str, ...]:
    """``source-only, dann`` → ("source_only", "dann")."""
    return tuple(m.strip().replace("-", "_") for m in text.split(",") if m.strip())


def _protocol_config(args):
    from cnnlab.adapt.dann import METHODS
    from cnnlab.adapt.dirtt import RefineConfig
    from cnnlab.adapt.grl import LambdaSchedule, LRSchedule
    from cnnlab.adapt.protocol import ProtocolConfig
    from cnnlab.adapt.pseudo import PseudoConfig

    for flag in ("source_only_epochs", "dann_epochs", "target_only_epochs", "pl_epochs", "batch_size",
                 "dann_batch_size", "val_size"):
        if getattr(args, flag) < 1:
            raise CnnlabError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    methods = _method_list(args.methods)
    pseudo = PseudoConfig(rounds=args.pl_rounds, threshold=args.pl_threshold, class_balance=not args.no_class_balance,
                          epochs_per_round=args.pl_epochs)
    cfg = ProtocolConfig(seed=args.seed, source_only_epochs=args.source_only_epochs, dann_epochs=args.dann_epochs,
                         target_only_epochs=args.target_only_epochs,
                         source_batch=args.batch_size, dann_batch=args.dann_batch_size,
                         lr=LRSchedule(args.lr_schedule, args.lr),
                         lambda_schedule=LambdaSchedule(args.lambda_schedule, args.gamma, args.lambda_value),
                         precision=args.precision, compile=args.compile, methods=methods, pseudo=pseudo,
                         pseudo_from=_method_list(args.pl_from),
                         select_by=args.pl_select, input_norm=args.input_norm, vada_lr=args.vada_lr,
                         vada_domain_weight=args.vada_domain_weight, vada_adversary=args.vada_adversary,
                         epoch_length=args.epoch_length,
                         vada_target_weight=args.vada_target_weight,
                         vat_radius=args.vat_radius,
                         refine=RefineConfig(rounds=args.dirtt_rounds, epochs_per_round=args.dirtt_epochs),
                         refine_from=_method_list(args.dirtt_from))
    bad = [m for m in cfg.methods + cfg.pseudo_from + cfg.refine_from if m not in METHODS]
    if bad:
        raise CnnlabError(f"unknown method {bad[0]!r}; use {', '.join(m.replace('_', '-') for m in METHODS)}")
    if min(args.vada_lr, args.vat_radius) <= 0 or min(args.vada_domain_weight, args.vada_target_weight) < 0:
        raise CnnlabError("--vada-lr and --vat-radius must be > 0, --vada-domain-weight and --vada-target-weight ≥ 0")
    if args.dry_run:
        cfg = replace(cfg, source_only_epochs=1, dann_epochs=2, target_only_epochs=1,
                      pseudo=replace(pseudo, rounds=min(pseudo.rounds, 1), epochs_per_round=1),
                      refine=replace(cfg.refine, rounds=min(cfg.refine.rounds, 1)))
    return cfg


def _cmd_adapt(args) -> int:
    from cnnlab.adapt.studies import run_studies
    from cnnlab.adapt.protocol import check_batches, run_protocol
    from cnnlab.runs import Run, resolve_device, seed_everything

    studies = [s.strip() for s in args.studies.split(",") if s.strip()] if args.studies else []
    if bad := [s for s in studies if s not in STUDIES]:
        raise CnnlabError(f"--studies {bad[0]!r}: choose from {', '.join(STUDIES)}")
    device = resolve_device(args.device)
    seed_everything(args.seed)
    cfg = _protocol_config(args)
    domains = _load_domains(args)
    if args.dry_run:  # a smoke test on whatever domains it is given: batches that fit them
        n = min(len(domains.source_train), len(domains.target_train))
        cfg = replace(cfg, source_batch=min(cfg.source_batch, max(1, n // 2)),
                      dann_batch=min(cfg.dann_batch, max(1, n // 2)))
    check_batches(cfg, domains)  # before the run folder exists
    run = Run.create(args.out, "adapt", {"protocol": cfg, "domains": domains.summary(), "studies": studies},
                     args.seed, resume=args.resume)
    try:
        out = run_protocol(run, domains, cfg, device=device, resume=args.resume)
        if studies:
            run_studies(run, domains, cfg, out["results"], studies, device=device, resume=args.resume)
    finally:
        run.close()
    _print_summary(out["summary"])
    print("\nchoosing among all models, epochs and rounds (target-only excluded):")
    for r in out["model_selection"]:
        acc = r["target test acc"]
        print(f"{'*' if r['recommended'] else ' '} {r['selected by']:48s} {r['model'] or '-':36s} {r['at'] or '-':10s} "
              f"{'-' if acc is None else f'{acc:.4f}'}")
    print("  (* the recommended rule, chosen on a development pair: docs/checks/part_c.md)")
    for w in out["warnings"]:
        print(f"note: {w}")
    print(f"run folder: {run.root}")
    return 0


def _print_summary(rows) -> None:
    heads = {"source_val_acc": "by src val", "dev_risk": "by DEV", "target_entropy": "by entropy", "atc": "by ATC",
             "snd": "by SND"}
    cols = [("target test acc (last)", "last epoch")] + [(f"picked by {c}: target acc", heads[c]) for c in LABEL_FREE] \
        + [("ORACLE best target test: target acc", "ORACLE")]
    print(f"{'model':40s} " + " ".join(f"{h:>10s}" for _, h in cols))
    for r in rows:
        print(f"{r['model']:40s} " + " ".join(f"{r[k]:10.4f}" if isinstance(r.get(k), float) else f"{'-':>10s}"
                                              for k, _ in cols))


def _cmd_mnistm(args) -> int:
    import numpy as np

    from cnnlab.adapt import figures
    from cnnlab.adapt.domains import resolve_photos
    from cnnlab.adapt.mnistm import build_mnistm
    from cnnlab.data import load_dataset
    from cnnlab.runs import Run, atomic_write_bytes

    source = args.source or ("mnist" if args.data_root else "mnist-embedded")
    photos = resolve_photos(args.photos, args.data_root)
    run = Run.create(args.out, "mnistm", {"source": source, "photos": photos.source, "seed": args.mnistm_seed},
                     args.mnistm_seed)
    try:
        rows = []
        for stream, split in enumerate(("train", "test")):
            digits = load_dataset(source, split, data_root=args.data_root, download=args.download)
            if args.dry_run:
                digits = digits.subset(range(min(len(digits), 64)))
            m = build_mnistm(digits, photos, seed=args.mnistm_seed, stream=stream, name=f"mnistm-{split}")
            rows.append({"split": split, "images": len(m), "mean_rgb": [round(float(v), 4) for v in
                         m.images.float().mean((0, 2, 3)) / 255], "source": digits.name})
            if args.export:
                import io
                buf = io.BytesIO()
                np.savez_compressed(buf, images=m.images.numpy(), labels=m.labels.numpy())
                atomic_write_bytes(run.path(f"mnistm_{split}.npz"), buf.getvalue())
            if split == "test":
                run.save_figure(figures.domain_samples_figure(digits.images, m.images,
                                                              titles=(source, "MNIST-M")), "samples")
        run.write_table("mnistm", rows)
    finally:
        run.close()
    for r in rows:
        print(f"{r['split']:5s} {r['images']:6d} images, mean RGB {r['mean_rgb']}")
    print(f"photos: {photos.source} ({len(photos)}); run folder: {run.root}")
    return 0


def add_commands(sub) -> None:
    from cnnlab.cli import HelpFormatter, add_common

    p = sub.add_parser("adapt", help="Part C: source-only, DANN and target-only (oracle) MNIST → MNIST-M, "
                                     "label-free model selection, pseudo-labelling, studies",
                       formatter_class=HelpFormatter)
    add_common(p, out_default="runs/adapt")
    _domain_args(p)
    t = p.add_argument_group("training (course defaults)")
    t.add_argument("--methods", default="source-only,dann,target-only", help="which models to train")
    t.add_argument("--source-only-epochs", type=int, default=10, help="epochs of the source-only baseline")
    t.add_argument("--dann-epochs", type=int, default=20, help="epochs of DANN")
    t.add_argument("--target-only-epochs", type=int, default=10,
                   help="epochs of the target-only oracle (trained on target labels, for reference)")
    t.add_argument("--batch-size", type=int, default=128, help="batch of source-only and target-only")
    t.add_argument("--dann-batch-size", type=int, default=64, help="DANN's batch per domain")
    t.add_argument("--lr", type=float, default=0.01, help="μ0 of μ0/(1+10p)^0.75")
    t.add_argument("--lr-schedule", default="course", help="course (p per epoch), paper (p per step), constant")
    t.add_argument("--lambda-schedule", default="course", help="course (γ=2), paper (γ=10), constant, none (C-Q1)")
    t.add_argument("--epoch-length", default="shorter", choices=EPOCH_LENGTHS,
                   help="DANN and VADA: shorter (the course) ends an epoch when the shorter domain runs out of "
                        "batches; source makes it one pass over the source, drawing the target's batches again "
                        "as needed (a small target set otherwise gives few steps; it can also overfit to that set: "
                        "docs/checks/part_c.md)")
    t.add_argument("--gamma", type=float, default=None, help="override γ of the λ schedule")
    t.add_argument("--lambda-value", type=float, default=1.0, help="λ of --lambda-schedule constant")
    t.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto (default): bf16 autocast on CPUs with native bf16 (AMX/AVX512-BF16: 2-3x faster, "
                        "the course's accuracies), else fp32; fp32: bit-exact everywhere; bf16")
    t.add_argument("--compile", action="store_true",
                   help="compile the training step's networks with torch.compile (on a GPU mode reduce-overhead: CUDA graphs, "
                        "for these small launch-bound networks; benchmarks/bench_gpu.py measures it). Off by default: "
                        "no GPU measurement has chosen it yet, and on a CPU it needs a C++ compiler")
    v = p.add_argument_group("beyond the course: VADA (--methods ...,vada; Shu et al. 2018)")
    v.add_argument("--input-norm", default="auto", choices=("auto", "course", "instance"),
                   help="input normalisation: auto (instance-normalised images for VADA, the course's MNIST "
                        "mean/std for the others), course, or instance for every method")
    v.add_argument("--vada-lr", type=float, default=VADA_DEFAULTS["lr"].lr0,
                   help="VADA's Adam learning rate (constant)")
    v.add_argument("--vada-domain-weight", type=float, default=VADA_DEFAULTS["domain_weight"],
                   help="VADA: multiplies λ (the feature extractor's share of the domain loss, through the confusion loss or the GRL)")
    v.add_argument("--vada-adversary", default=VADA_DEFAULTS["adversary"], choices=ADVERSARIES,
                   help="how VADA's features learn from the domain head: grl (gradient reversal, as the course's "
                        "DANN) or confusion (flipped domain labels against a frozen head, as Shu et al.'s code)")
    v.add_argument("--vada-target-weight", type=float, default=VADA_DEFAULTS["target_weight"],
                   help="VADA: weight of the target's conditional entropy and virtual adversarial loss")
    v.add_argument("--vat-radius", type=float, default=VADA_DEFAULTS["vat_radius"],
                   help="VADA: L2 norm of the virtual adversarial perturbation")
    v.add_argument("--dirtt-rounds", type=int, default=2,
                   help="DIRT-T: rounds of target-only refinement after VADA, each from the last one's average (0: none)")
    v.add_argument("--dirtt-epochs", type=int, default=1, help="DIRT-T: passes over the target images per round")
    v.add_argument("--dirtt-from", default="vada", help="refine these models' label-free picks (when trained)")
    q = p.add_argument_group("pseudo-labelling (C-Q4)")
    q.add_argument("--pl-rounds", type=int, default=3, help="self-training rounds (0: none)")
    q.add_argument("--pl-threshold", type=float, default=0.9, help="keep target predictions at least this confident")
    q.add_argument("--no-class-balance", action="store_true", help="do not cap the pseudo-labels per class")
    q.add_argument("--pl-epochs", type=int, default=1, help="fine-tuning epochs per round")
    q.add_argument("--pl-from", default="dann", help="start from these models' label-free picks (e.g. dann,source-only)")
    q.add_argument("--pl-select", default="last", choices=("last",) + LABEL_FREE,
                   help="the label-free rule that picks the epoch self-training starts from (never target labels); "
                        "last (default): on real MNIST-M, source validation accuracy picks an early DANN epoch")
    p.add_argument("--studies", default="", help=f"comma list of {', '.join(STUDIES)} (default: none)")
    p.set_defaults(func=_cmd_adapt, retain_freed_memory=True)

    m = sub.add_parser("mnistm", help="build MNIST-M (seeded, cached) from digits and photographs",
                       formatter_class=HelpFormatter)
    add_common(m, out_default="runs/mnistm")
    m.add_argument("--source", default=None, help="digits (default: mnist with --data-root, else mnist-embedded)")
    m.add_argument("--photos", default="auto", help="auto, bsds500, embedded, or a folder of photographs")
    m.add_argument("--mnistm-seed", type=int, default=42, help="seed of the MNIST-M builder (course: 42)")
    m.add_argument("--export", action="store_true", help="also write mnistm_{train,test}.npz into the run folder")
    m.set_defaults(func=_cmd_mnistm)
