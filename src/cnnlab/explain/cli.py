"""``cnnlab explain saliency|fool|attack|classviz``: Part B's methods on any model and any images.

Model: ``--arch/--weights/--mean/--std`` (default: cnnlab's embedded digit classifier, trained once
and cached). Images: ``--dataset`` (mnist-embedded, imagenet-val25, imagefolder:PATH, …) with
``--indices``/``--limit``, and/or image files given as arguments. Each command writes a run folder
with its figures (``figures/``), per-image tables (CSV) and ``metrics.json``.

Examples::

    cnnlab explain saliency --method all --limit 8
    cnnlab explain fool --arch mobilenet_v2 --weights mnv2.pth --mean 0.5 --std 0.5 \\
        --dataset imagenet-val25 --data-root data --indices 1 --target 6
    cnnlab explain attack --attack pgd --norm linf --eps 8/255 --target random --limit 64
    cnnlab explain classviz --classes 3,8 --sweep
"""

from __future__ import annotations

import argparse
import logging

import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain.inputs import short_name as _short
from cnnlab.explain.sources import class_index, load_bundle, load_images
from cnnlab.options import add_model_args, number

log = logging.getLogger("cnnlab")


# --------------------------------------------------------------------------- arguments
def _model_args(p: argparse.ArgumentParser, suffix: str = "", what: str = "the model") -> None:
    default = "a digit classifier of another seed" if suffix else "cnnlab's embedded digit classifier"
    add_model_args(p, arch=None, weights=None, suffix=suffix, what=f"{what} (default: {default})")


def image_args(p: argparse.ArgumentParser, limit: int) -> None:
    p.add_argument("images", nargs="*", help="image files (JPEG, PNG, …); labels unknown (-1)")
    p.add_argument("--dataset", default=None,
                   help="mnist-embedded (default without image files), imagenet-val25, imagefolder:PATH, … "
                        "(`cnnlab datasets`)")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--indices", default=None, help="images of the dataset to use, e.g. 0,1,5 or 0-4")
    p.add_argument("--limit", type=int, default=limit, help=f"the first N images of the dataset (default {limit})")


def _start(args, command: str, config: dict):
    from cnnlab.runs import Run

    return Run.create(args.out, f"explain {command}", config, args.seed, resume=args.resume)


def _setup(args):
    from cnnlab.runs import resolve_device, seed_everything

    g = seed_everything(args.seed)
    device = resolve_device(args.device)
    bundle = load_bundle(args, seed=0, device=device)
    return bundle, g


def _figures(paths) -> str:
    return ", ".join(str(p) for p in paths)


# --------------------------------------------------------------------------- saliency
def _cmd_saliency(args) -> int:
    from cnnlab.explain.saliency import gradcam_layer
    from cnnlab.explain.study import SaliencyConfig, saliency_study

    bundle, g = _setup(args)
    methods = ["saliency", "smoothgrad", "gradcam"] if args.method == "all" else [args.method]
    layer = gradcam_layer(bundle, args.layer) if "gradcam" in methods else None
    other = load_bundle(args, "-b", seed=1, device=bundle.device) if (args.arch_b or args.compare) else None
    data = load_images(args, bundle)
    target = None if args.target is None else class_index(bundle, args.target)
    cfg = SaliencyConfig(methods=tuple(methods), samples=4 if args.dry_run else args.samples, noise=args.noise,
                         layer=layer, sanity=args.sanity, sanity_steps=2 if args.dry_run else 5)
    config = {"arch": bundle.arch, "weights": bundle.weights, "mean": bundle.mean, "std": bundle.std,
              "methods": methods, "layer": layer, "samples": cfg.samples, "noise": args.noise, "target": args.target,
              "images": data.source, "ids": data.ids, "second": None if other is None else other.arch}
    with _start(args, "saliency", config) as run:
        res = saliency_study(run, bundle, data.images, cfg, targets=target, labels=data.labels, ids=data.ids,
                             second=other, generator=g)
        for r in res.sanity.rows if res.sanity else []:
            print(f"randomised {r['randomised']:>8} ({r['layers']} layers): Spearman {r['spearman_mean']:.3f}, "
                  f"SSIM {r['ssim_mean']:.3f}")
        run.log_metrics(n_images=len(res.rows), methods=methods)
    print(f"{len(res.rows)} images, {', '.join(res.labels[k] for k in res.maps)}; "
          f"figures: {_figures(res.figures.values())}")
    return 0


# --------------------------------------------------------------------------- fooling images
def _targets(args, bundle, data, g, what="--target") -> torch.Tensor:
    """(N, K) targets per image from --target / --targets-per-image."""
    from cnnlab.explain.study import random_pair_targets

    if args.target is not None and args.target != "random":
        t = class_index(bundle, args.target, what)
        return torch.full((len(data.images), 1), t, dtype=torch.long)
    # labels unknown (files): targets differ from the clean prediction
    return random_pair_targets(bundle, data.images, data.labels, args.targets_per_image, g)


def _cmd_fool(args) -> int:
    from cnnlab.explain.study import FoolingConfig, fooling_study

    bundle, g = _setup(args)
    data = load_images(args, bundle)
    targets = _targets(args, bundle, data, g)
    cfg = FoolingConfig(eta=args.eta, max_iter=min(args.max_iter, 10) if args.dry_run else args.max_iter,
                        clamp=not args.no_clamp, batch_size=args.batch_size)
    config = {"arch": bundle.arch, "weights": bundle.weights, "mean": bundle.mean, "std": bundle.std,
              "eta": args.eta, "max_iter": cfg.max_iter, "clamp": cfg.clamp, "images": data.source, "ids": data.ids,
              "target": args.target, "targets_per_image": args.targets_per_image}
    with _start(args, "fool", config) as run:
        res = fooling_study(run, bundle, data.images, data.labels, targets, cfg, ids=data.ids)
        run.log_metrics(summary=res.summary)
    summary = res.summary
    n_fail = int((~res.result.success).sum())
    print(f"fooling images: {summary['success_rate']:.1%} of {len(res.rows)} pairs fooled within {cfg.max_iter} "
          f"iterations (median {summary['median_iters']:g} iterations; {n_fail} failures), mean L2 "
          f"{summary['l2_255']:.1f}/255, PSNR {summary['psnr']:.1f} dB, SSIM {summary['ssim']:.3f}")
    print(f"run folder: {run.root}; figures: {_figures(res.figures.values())}")
    return 0


# --------------------------------------------------------------------------- attacks
def _cmd_attack(args) -> int:
    from cnnlab.explain.fooling import image_target_pairs
    from cnnlab.explain.study import AttackConfig, attack_study, command_attacks

    bundle, g = _setup(args)
    others = {}
    if args.arch_b or args.compare:
        others[_model_name(args, "-b")] = load_bundle(args, "-b", seed=1, device=bundle.device)
    data = load_images(args, bundle)
    targeted = args.target is not None
    if targeted:
        imgs, labels, targets, index = image_target_pairs(data.images, data.labels, _targets(args, bundle, data, g))
    else:
        imgs, labels, targets, index = data.images, data.labels, None, torch.arange(len(data.images))
    names = ["fgsm", "ifgsm", "pgd-linf", "pgd-l2"] if args.attack == "all" else [args.attack]
    model = _model_name(args, "")
    cfg = AttackConfig(command_attacks([f"pgd-{args.norm}" if n == "pgd" else n for n in names], targeted, model),
                       eps=args.eps, eps_l2=args.eps_l2, alpha=args.alpha or None,
                       steps=min(args.steps, 2) if args.dry_run else args.steps, early_stop=not args.no_early_stop,
                       batch_size=args.batch_size)
    config = {"arch": bundle.arch, "weights": bundle.weights, "attacks": names, "eps": args.eps,
              "eps_l2": args.eps_l2, "alpha": args.alpha, "steps": cfg.steps, "target": args.target,
              "images": data.source, "ids": data.ids, "early_stop": cfg.early_stop, "transfer_to": list(others)}
    with _start(args, "attack", config) as run:
        known = labels if bool((labels >= 0).all()) else None  # files: move away from the clean prediction
        res = attack_study(run, bundle, imgs, cfg, labels=known, targets=targets,
                           ids=[data.ids[i] for i in index.tolist()], generator=g,
                           transfer={model: bundle, **others} if others else None)
        run.log_metrics(summary=res.table)
    print(f"{'attack':>22} {'success':>8} {'already':>8} {'med.it':>7} {'L2/255':>8} {'Linf/255':>9} {'PSNR':>6} "
          f"{'SSIM':>6} {'uint8':>6}")
    for s in res.table:
        print(f"{s['attack']:>22} {s['success_rate']:>8.1%} {s['already']:>8d} {s['median_iters']:>7g} "
              f"{s['l2_255']:>8.1f} {s['linf_255']:>9.1f} {s['psnr']:>6.1f} {s['ssim']:>6.3f} "
              f"{s['uint8_success_rate']:>6.1%}")
    print("already: fooled before any step (misclassified clean, or by PGD's random start); "
          "uint8: still fooled once saved as 8-bit pixels")
    for r in res.transfer or []:
        print("transfer " + ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in r.items()))
    print(f"run folder: {run.root}; figures: {_figures(res.figures.values())}")
    return 0


def _model_name(args, suffix: str) -> str:
    arch = getattr(args, f"arch{suffix.replace('-', '_')}")
    return arch or ("digitnet (seed 1)" if suffix else "digitnet (seed 0)")


# --------------------------------------------------------------------------- class visualisation
def _cmd_classviz(args) -> int:
    from cnnlab.explain.study import ClassvizConfig, SweepConfig, classviz_study, sweep_study

    bundle, g = _setup(args)
    if not args.classes:
        raise CnnlabError("--classes is required: class indices or names, e.g. --classes 76,366 or --classes tarantula")
    classes = [class_index(bundle, c, "--classes") for c in args.classes.split(",")]
    init = None
    if args.init_image or args.init_index is not None:
        if args.init_image:
            args.images, args.dataset = [args.init_image], None
        else:
            args.images, args.indices, args.indices_flag = [], str(args.init_index), "--init-index"
        data = load_images(args, bundle)
        init = data.images[:1].expand(len(classes), -1, -1, -1)
    iters = min(args.iterations, 5) if args.dry_run else args.iterations
    cfg = ClassvizConfig(iterations=iters, learning_rate=args.lr, l2_reg=args.l2_reg,
                         blur_every=args.blur_every or None, blur_sigma=args.blur_sigma, max_jitter=args.max_jitter,
                         snapshot_every=min(args.snapshot_every, iters))
    sweep_cfg = None
    if args.sweep:
        sweep_cfg = SweepConfig(iterations=(2, 4) if args.dry_run else (25, 100, 200, 400),
                                num_iterations=5 if args.dry_run else 200, blur_every=cfg.blur_every,
                                blur_sigma=cfg.blur_sigma, max_jitter=cfg.max_jitter)
    config = {"arch": bundle.arch, "weights": bundle.weights, "classes": classes, "iterations": iters,
              "l2_reg": cfg.l2_reg, "learning_rate": cfg.learning_rate, "blur_every": cfg.blur_every,
              "blur_sigma": cfg.blur_sigma, "max_jitter": cfg.max_jitter, "snapshot_every": cfg.snapshot_every,
              "init": args.init_image or args.init_index, "sweep": args.sweep}
    with _start(args, "classviz", config) as run:
        res = classviz_study(run, bundle, classes, cfg, init=init, generator=g)
        paths = list(res.figures.values())
        if sweep_cfg is not None:
            paths += sweep_study(run, bundle, classes[0], sweep_cfg, generator=g).figures.values()
        run.log_metrics(final=res.rows)
    for r in res.rows:
        print(f"class {r['target']} ({_short(r['class'], 30)}): score {r['score']:.2f}, p {r['p_target']:.3f}, "
              f"predicted {_short(r['pred'], 30)}")
    print(f"run folder: {run.root}; figures: {_figures(paths)}")
    return 0


# --------------------------------------------------------------------------- parser
def add_commands(sub) -> None:
    from cnnlab.cli import add_common

    p = sub.add_parser("explain", help="Part B: saliency maps, fooling images, attacks, class visualisation")
    esub = p.add_subparsers(dest="explain_command", metavar="METHOD")
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])

    s = esub.add_parser("saliency", help="saliency maps (course), SmoothGrad, Grad-CAM, sanity check")
    _model_args(s)
    image_args(s, limit=5)
    s.add_argument("--method", choices=["saliency", "smoothgrad", "gradcam", "all"], default="saliency",
                   help="saliency (the course, default), smoothgrad, gradcam, or all three")
    s.add_argument("--target", default=None, help="class to explain (index or name); default: each image's prediction")
    s.add_argument("--layer", default=None, help="Grad-CAM layer (module name or alias; default: last conv block)")
    s.add_argument("--samples", type=int, default=25, help="SmoothGrad: noisy samples per image (default 25)")
    s.add_argument("--noise", type=float, default=0.15, help="SmoothGrad: σ as a fraction of the image's range (default 0.15)")
    s.add_argument("--sanity", action="store_true", help="model-randomisation sanity check (Adebayo et al. 2018)")
    s.add_argument("--compare", action="store_true", help="also a second network (--arch-b …; default a digit classifier of another seed)")
    _model_args(s, "-b", "the second network (B-Q4)")
    add_common(s, out_default="runs/explain-saliency")
    s.set_defaults(func=_cmd_saliency)

    f = esub.add_parser("fool", help="the course's fooling images (x ← x + η·g/‖g‖)")
    _model_args(f)
    image_args(f, limit=5)
    f.add_argument("--target", default=None, help="target class (index or name), or 'random' (default: random)")
    f.add_argument("--targets-per-image", type=int, default=1, help="random targets per image (default 1)")
    f.add_argument("--eta", type=float, default=1.0, help="step length η in normalised units, as the course (default 1)")
    f.add_argument("--max-iter", type=int, default=100, help="cap; pairs not fooled by then are reported as failures (default 100)")
    f.add_argument("--no-clamp", action="store_true", help="do not clamp to valid pixels (the course does not)")
    f.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass (default 16)")
    add_common(f, out_default="runs/explain-fool")
    f.set_defaults(func=_cmd_fool)

    a = esub.add_parser("attack", help="FGSM, I-FGSM, PGD (L∞/L2), targeted or not, + transfer")
    _model_args(a)
    image_args(a, limit=64)
    a.add_argument("--attack", choices=["fgsm", "ifgsm", "pgd", "all"], default="all",
                   help="all (default): FGSM, I-FGSM, PGD L∞ and PGD L2")
    a.add_argument("--norm", choices=["linf", "l2"], default="linf", help="PGD's norm (default linf)")
    a.add_argument("--eps", type=number, default=8 / 255, help="L∞ budget in [0,1] pixel units (default 8/255)")
    a.add_argument("--eps-l2", type=number, default=1.0, help="L2 budget in [0,1] pixel units (default 1)")
    a.add_argument("--alpha", type=number, default=None, help="step (default ε/4 for L∞, ε/5 for L2)")
    a.add_argument("--steps", type=int, default=10, help="iterations of I-FGSM and PGD (default 10)")
    a.add_argument("--target", default=None, help="targeted: a class (index or name) or 'random'; default untargeted")
    a.add_argument("--targets-per-image", type=int, default=1, help="with --target random (default 1)")
    a.add_argument("--no-early-stop", action="store_true", help="run every step even after success")
    a.add_argument("--compare", action="store_true", help="transfer matrix with a second network (--arch-b …)")
    a.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    _model_args(a, "-b", "the second network (transfer)")
    add_common(a, out_default="runs/explain-attack")
    a.set_defaults(func=_cmd_attack)

    c = esub.add_parser("classviz", help="class visualisation by gradient ascent (course algorithm)")
    _model_args(c)
    c.add_argument("--classes", default=None, help="classes (indices or names), comma-separated")
    c.add_argument("--iterations", type=int, default=200, help="(default 200)")
    c.add_argument("--lr", type=float, default=5.0, help="learning rate (default 5)")
    c.add_argument("--l2-reg", type=float, default=1e-3, help="λ of −λ‖I‖² (default 1e-3)")
    c.add_argument("--blur-every", type=int, default=10, help="blur every n iterations, 0: never (default 10)")
    c.add_argument("--blur-sigma", type=float, default=0.5, help="(default 0.5)")
    c.add_argument("--max-jitter", type=int, default=None, help="px (default: 16 at 224×224, scaled to the input size)")
    c.add_argument("--snapshot-every", type=int, default=25, help="(default 25)")
    c.add_argument("--sweep", action="store_true", help="B-Q9: vary iterations, lr and λ for the first class")
    c.add_argument("--init-image", default=None, help="B-Q10: start from this image file")
    c.add_argument("--init-index", type=int, default=None, help="B-Q10: start from this image of --dataset")
    c.add_argument("--dataset", default=None, help="dataset for --init-index (default mnist-embedded)")
    c.add_argument("--split", default="test", help="(default test)")
    c.set_defaults(images=[], indices=None, limit=1)
    add_common(c, out_default="runs/explain-classviz")
    c.set_defaults(func=_cmd_classviz)
