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
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain.inputs import short_name as _short
from cnnlab.explain.metrics import top_share

log = logging.getLogger("cnnlab")


# --------------------------------------------------------------------------- argument types
def _number(s: str) -> float:
    """A float or a fraction like 8/255."""
    try:
        if "/" in s:
            a, b = s.split("/", 1)
            return float(a) / float(b)
        return float(s)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{s!r} is not a number (e.g. 0.03 or 8/255)") from None


def _floats(s: str | None, what: str):
    if s is None:
        return None
    try:
        vals = tuple(_number(x) for x in s.split(","))
    except argparse.ArgumentTypeError:
        raise CnnlabError(f"{what} {s!r}: expected comma-separated numbers, e.g. 0.5 or 0.485,0.456,0.406") from None
    return vals * 3 if len(vals) == 1 else vals


def _ints(s: str | None, what: str) -> list[int] | None:
    if not s:
        return None
    try:
        out = []
        for part in s.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        return out
    except ValueError:
        raise CnnlabError(f"{what} {s!r}: expected integers like 0,3,7 or 0-4") from None


def class_index(bundle, s: str | int, what: str = "--target") -> int:
    """A class given as an index or a name of ``bundle.categories`` (case-insensitive, unique prefix)."""
    cats = bundle.categories or []
    s = str(s).strip()
    if s.lstrip("-").isdigit():
        k = int(s)
        n = len(cats) or None
        if k < 0 or (n and k >= n):
            raise CnnlabError(f"{what} {k}: {bundle.arch} has classes 0..{(n or 1) - 1}")
        return k
    low = [c.lower() for c in cats]
    if s.lower() in low:
        return low.index(s.lower())
    hits = [i for i, c in enumerate(low) if c.startswith(s.lower())]
    if len(hits) == 1:
        return hits[0]
    hint = f" (matches: {', '.join(cats[i] for i in hits[:5])})" if hits else ""
    raise CnnlabError(f"{what} {s!r} is not a class index or a unique class name of {bundle.arch}{hint}")


# --------------------------------------------------------------------------- models and images
def model_args(p: argparse.ArgumentParser, suffix: str = "", what: str = "the model") -> None:
    p.add_argument(f"--arch{suffix}", default=None,
                   help=f"{what}: a name from `cnnlab models` (default: cnnlab's embedded digit classifier)")
    p.add_argument(f"--weights{suffix}", default=None, help="DEFAULT (torchvision), NONE, or a .pth state dict")
    p.add_argument(f"--mean{suffix}", default=None, help="normalisation mean for a weights file, e.g. 0.5")
    p.add_argument(f"--std{suffix}", default=None, help="normalisation std for a weights file, e.g. 0.5")


def load_bundle(args, suffix: str = "", *, seed: int = 0, device=None):
    """The bundle named by ``--arch{suffix}`` etc.; without an arch, the embedded digit classifier
    (``seed`` picks which of them: a second network is another seed)."""
    from cnnlab.models import build_model
    from cnnlab.models.pretrained import digit_classifier

    key = suffix.replace("-", "_")
    arch, weights = getattr(args, f"arch{key}"), getattr(args, f"weights{key}")
    mean = _floats(getattr(args, f"mean{key}"), f"--mean{suffix}")
    std = _floats(getattr(args, f"std{key}"), f"--std{suffix}")
    if arch is None:
        if suffix and args.arch is not None:
            raise CnnlabError(f"--compare with --arch {args.arch}: name the second network with --arch{suffix} "
                              f"(and --weights{suffix}, --mean{suffix}, --std{suffix} for a weights file)")
        if weights is not None:
            raise CnnlabError(f"--weights{suffix} {weights} needs --arch{suffix} (the architecture the file was saved from)")
        return digit_classifier(seed=seed, device=device or "cpu")
    bundle = build_model(arch, weights or "DEFAULT", mean=mean, std=std, device=device)
    if mean is not None and len(mean) != bundle.in_channels:
        bundle.mean, bundle.std = tuple(mean[:bundle.in_channels]), tuple(std[:bundle.in_channels])
    return bundle


def image_args(p: argparse.ArgumentParser, limit: int) -> None:
    p.add_argument("images", nargs="*", help="image files (JPEG, PNG, …); labels unknown (-1)")
    p.add_argument("--dataset", default=None,
                   help="mnist-embedded (default without image files), imagenet-val25, imagefolder:PATH, … "
                        "(`cnnlab datasets`)")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--indices", default=None, help="images of the dataset to use, e.g. 0,1,5 or 0-4")
    p.add_argument("--limit", type=int, default=limit, help=f"the first N images of the dataset (default {limit})")


@dataclass
class Images:
    images: torch.Tensor  # uint8 (N,C,H,W)
    labels: torch.Tensor  # (N,), -1 when unknown
    ids: list[str]  # dataset index or file name, for tables and titles
    source: str


def load_images(args, bundle) -> Images:
    from cnnlab.data import load_dataset
    from cnnlab.data.decode import decode_image

    parts: list[Images] = []
    if args.dataset or not args.images:
        name = args.dataset or "mnist-embedded"
        ds = load_dataset(name, args.split, data_root=args.data_root, download=args.download, size=bundle.input_size)
        idx = _ints(args.indices, "--indices") or list(range(min(args.limit, len(ds))))
        if args.limit is not None and args.limit < 1:
            raise CnnlabError(f"--limit {args.limit}: must be at least 1")
        bad = [i for i in idx if not 0 <= i < len(ds)]
        if bad:
            flag = getattr(args, "indices_flag", "--indices")  # classviz: --init-index
            raise CnnlabError(f"{flag}: {bad[0]} is out of range for {name} ({len(ds)} images in split {args.split}; "
                              f"use 0..{len(ds) - 1})")
        sub = ds.subset(idx) if hasattr(ds, "subset") else ds.materialize().subset(idx)
        parts.append(Images(sub.images, sub.labels, [str(i) for i in idx], name))
    for f in args.images:
        path = Path(f)
        if not path.is_file():
            raise CnnlabError(f"image file {path} not found")
        try:
            img = decode_image(path, size=bundle.input_size, channels=bundle.in_channels)
        except ValueError as e:
            raise CnnlabError(f"image file {path}: {e}") from None
        parts.append(Images(img[None], torch.tensor([-1]), [path.name], "files"))
    imgs = [p.images for p in parts]
    shapes = {tuple(i.shape[1:]) for i in imgs}
    if len(shapes) > 1:  # dataset images at native size + files at input size: bring all to the input size
        from cnnlab.data.transforms import to_float

        imgs = [(to_float(i, size=bundle.input_size, channels=bundle.in_channels) * 255).round().to(torch.uint8)
                for i in imgs]
    return Images(torch.cat(imgs), torch.cat([p.labels for p in parts]), sum((p.ids for p in parts), []),
                  "+".join(p.source for p in parts))


def _label_names(bundle, labels) -> list[str]:
    from cnnlab.explain.inputs import class_name

    return [class_name(bundle, int(y)) if int(y) >= 0 else "?" for y in labels]


def _start(args, command: str, config: dict):
    from cnnlab.runs import Run

    return Run.create(args.out, f"explain {command}", config, args.seed, resume=args.resume)


def _setup(args):
    from cnnlab.runs import resolve_device, seed_everything

    g = seed_everything(args.seed)
    device = resolve_device(args.device)
    bundle = load_bundle(args, seed=0, device=device)
    return bundle, g


# --------------------------------------------------------------------------- saliency
def _cmd_saliency(args) -> int:
    from cnnlab.explain import figures
    from cnnlab.explain.inputs import to_pixels
    from cnnlab.explain.saliency import grad_cam, gradcam_layer, predict, saliency_maps, smoothgrad
    from cnnlab.explain.sanity import model_randomization_check, spearman

    bundle, g = _setup(args)
    methods = ["saliency", "smoothgrad", "gradcam"] if args.method == "all" else [args.method]
    layer = gradcam_layer(bundle, args.layer) if "gradcam" in methods else None
    other = load_bundle(args, "-b", seed=1, device=bundle.device) if (args.arch_b or args.compare) else None
    data = load_images(args, bundle)
    samples = 4 if args.dry_run else args.samples
    probs = predict(bundle, data.images)
    pred = probs.argmax(1)
    targets = pred if args.target is None else torch.full_like(pred, class_index(bundle, args.target))
    cfg = {"arch": bundle.arch, "weights": bundle.weights, "mean": bundle.mean, "std": bundle.std,
           "methods": methods, "layer": layer, "samples": samples, "noise": args.noise, "target": args.target,
           "images": data.source, "ids": data.ids, "second": None if other is None else other.arch}
    with _start(args, "saliency", cfg) as run:
        maps = {}
        if "saliency" in methods:
            maps["saliency"] = saliency_maps(bundle, data.images, targets)
        if "smoothgrad" in methods:
            maps["smoothgrad"] = smoothgrad(bundle, data.images, targets, samples=samples, noise=args.noise, generator=g)
        if "gradcam" in methods:
            maps[f"grad-cam {layer}"] = grad_cam(bundle, data.images, targets, layer=layer)
        if other is not None:  # B-Q4: the same images and classes through a second network
            maps[f"saliency ({other.arch} {other.weights_id[:12]})"] = saliency_maps(other, data.images, targets)
        rows = []
        names = _label_names(bundle, data.labels)
        for i in range(len(data.images)):
            row = {"image": data.ids[i], "label": names[i], "pred": _label_names(bundle, pred[i:i + 1])[0],
                   "p_pred": float(probs[i, pred[i]]), "target": int(targets[i])}
            first = list(maps)[0]
            for k, m in maps.items():
                row[f"top5%_share {k}"] = top_share(m[i], 0.05)
                if k != first:  # rank agreement with the first method's map
                    row[f"spearman {first} vs {k}"] = spearman(maps[first][i], m[i])
            rows.append(row)
        run.write_table("per_image", rows)
        pix = to_pixels(bundle, bundle.preprocess(data.images)).cpu()
        titles = [f"{_short(names[i])}\npred {_short(rows[i]['pred'])}" for i in range(len(rows))]
        show = slice(0, min(len(pix), 10))
        fig = figures.maps_figure(pix[show], {k: v[show] for k, v in maps.items()}, titles[show],
                                  overlay=[k for k in maps if k.startswith("grad-cam")])
        paths = [run.save_figure(fig, "saliency")]
        if args.sanity:
            res = model_randomization_check(bundle, data.images[show], targets[show], steps=2 if args.dry_run else 5,
                                            generator=g)
            run.write_table("sanity_check", res.rows)
            paths.append(run.save_figure(figures.maps_figure(pix[show], res.maps, titles[show]), "sanity_maps"))
            paths.append(run.save_figure(figures.sanity_curve(res.rows), "sanity_curve"))
            for r in res.rows:
                print(f"randomised {r['randomised']:>8} ({r['layers']} layers): Spearman {r['spearman_mean']:.3f}, "
                      f"SSIM {r['ssim_mean']:.3f}")
        run.log_metrics(n_images=len(rows), methods=methods)
    print(f"{len(rows)} images, {', '.join(maps)}; figures: {', '.join(str(p) for p in paths)}")
    return 0


# --------------------------------------------------------------------------- fooling images
def _targets_for(args, bundle, data, g, what="--target"):
    """(pairs of images, labels, targets, image index) from --target / --targets-per-image."""
    from cnnlab.explain.fooling import image_target_pairs, random_targets

    from cnnlab.explain.saliency import predict

    n_cls = len(bundle.categories or []) or predict(bundle, data.images[:1]).shape[1]
    if args.target is not None and args.target != "random":
        t = class_index(bundle, args.target, what)
        targets = torch.full((len(data.images), 1), t, dtype=torch.long)
    else:
        # labels unknown (files): draw targets different from the clean prediction
        ref = torch.where(data.labels >= 0, data.labels, predict(bundle, data.images).argmax(1))
        targets = random_targets(ref, args.targets_per_image, n_cls, generator=g)
    return image_target_pairs(data.images, data.labels, targets)


def _cmd_fool(args) -> int:
    from cnnlab.explain import figures
    from cnnlab.explain.fooling import fooling_images
    from cnnlab.explain.inputs import to_pixels
    from cnnlab.explain.metrics import attack_table, summarize

    bundle, g = _setup(args)
    data = load_images(args, bundle)
    imgs, labels, targets, index = _targets_for(args, bundle, data, g)
    max_iter = min(args.max_iter, 10) if args.dry_run else args.max_iter
    cfg = {"arch": bundle.arch, "weights": bundle.weights, "mean": bundle.mean, "std": bundle.std, "eta": args.eta,
           "max_iter": max_iter, "clamp": not args.no_clamp, "images": data.source, "ids": data.ids,
           "target": args.target, "targets_per_image": args.targets_per_image}
    with _start(args, "fool", cfg) as run:
        res = fooling_images(bundle, imgs, targets, labels=labels, eta=args.eta, max_iter=max_iter,
                             clamp=not args.no_clamp, batch_size=args.batch_size)
        ids = [data.ids[i] for i in index.tolist()]
        rows = attack_table(bundle, res, image_ids=None)
        for r, i in zip(rows, ids):
            r["image"] = i
        run.write_table("per_pair", rows)
        summary = summarize(rows, "fooling")
        run.log_metrics(summary=summary)
        show = list(range(min(len(res), 6)))
        p0, p1 = to_pixels(bundle, res.originals[show]), to_pixels(bundle, res.images[show])
        titles = [(f"{_short(rows[i]['label'])} (image {ids[i]})",
                   f"→ {_short(rows[i]['pred'])}, {rows[i]['iterations']} it" + ("" if rows[i]["success"] else " FAILED"))
                  for i in show]
        paths = [run.save_figure(figures.fooling_figure(p0, p1, titles), "fooling"),
                 run.save_figure(figures.success_curve({"fooling": (res.iterations.numpy(), res.success.numpy())},
                                                       max_iter), "success_curve")]
    n_fail = int((~res.success).sum())
    print(f"fooling images: {summary['success_rate']:.1%} of {len(rows)} pairs fooled within {max_iter} iterations "
          f"(median {summary['median_iters']:g} iterations; {n_fail} failures), mean L2 {summary['l2_255']:.1f}/255, "
          f"PSNR {summary['psnr']:.1f} dB, SSIM {summary['ssim']:.3f}")
    print(f"run folder: {run.root}; figures: {', '.join(str(p) for p in paths)}")
    return 0


# --------------------------------------------------------------------------- attacks
def _cmd_attack(args) -> int:
    from cnnlab.explain import figures
    from cnnlab.explain.attacks import fgsm, ifgsm, pgd
    from cnnlab.explain.inputs import to_pixels
    from cnnlab.explain.metrics import attack_table, summarize, transfer_matrix

    bundle, g = _setup(args)
    others = {}
    if args.arch_b or args.compare:
        others[_model_name(args, "-b")] = load_bundle(args, "-b", seed=1, device=bundle.device)
    data = load_images(args, bundle)
    targeted = args.target is not None
    if targeted:
        imgs, labels, targets, index = _targets_for(args, bundle, data, g)
    else:
        imgs, labels, targets, index = data.images, data.labels, None, torch.arange(len(data.images))
    labels = torch.where(labels >= 0, labels, -torch.ones_like(labels))
    steps = min(args.steps, 2) if args.dry_run else args.steps
    names = ["fgsm", "ifgsm", "pgd-linf", "pgd-l2"] if args.attack == "all" else [args.attack]
    cfg = {"arch": bundle.arch, "weights": bundle.weights, "attacks": names, "eps": args.eps, "eps_l2": args.eps_l2,
           "alpha": args.alpha, "steps": steps, "target": args.target, "images": data.source, "ids": data.ids,
           "early_stop": not args.no_early_stop, "transfer_to": list(others)}
    with _start(args, "attack", cfg) as run:
        known = labels if bool((labels >= 0).all()) else None  # files: move away from the clean prediction
        summaries, results, adv_rows, adv_titles = [], {}, {}, {}
        for name in names:
            kw = dict(targets=targets, labels=known, batch_size=args.batch_size)
            if name == "fgsm":
                res = fgsm(bundle, imgs, eps=args.eps, **kw)
            elif name == "ifgsm":
                res = ifgsm(bundle, imgs, eps=args.eps, alpha=args.alpha or args.eps / 4, steps=steps,
                            early_stop=not args.no_early_stop, **kw)
            else:
                norm = name.split("-")[1] if "-" in name else args.norm
                eps = args.eps if norm == "linf" else args.eps_l2
                res = pgd(bundle, imgs, eps=eps, alpha=args.alpha or (eps / 4 if norm == "linf" else eps / 5),
                          steps=steps, norm=norm, early_stop=not args.no_early_stop, generator=g, **kw)
                name = f"pgd-{norm}"
            rows = attack_table(bundle, res)
            for r, i in zip(rows, index.tolist()):
                r["image"] = data.ids[i]
            run.write_table(f"per_image_{name}", rows)
            summaries.append(summarize(rows, name + ("-targeted" if targeted else "")))
            results[name] = res
            adv_rows[name] = to_pixels(bundle, res.images[:8])
            adv_titles["original"], adv_titles[name] = figures.attack_titles(rows, 8)
        run.write_table("summary", summaries)
        paths = [run.save_figure(figures.image_rows_figure(
            {"original": to_pixels(bundle, res.originals[:8]), **adv_rows}, adv_titles), "adversarial_examples")]
        if others:
            models = {_model_name(args, ""): bundle, **others}
            rows_t = transfer_matrix({f"{_model_name(args, '')} {k}": (bundle, r) for k, r in results.items()}, models)
            run.write_table("transfer", rows_t)
        run.log_metrics(summary=summaries)
    print(f"{'attack':>22} {'success':>8} {'already':>8} {'med.it':>7} {'L2/255':>8} {'Linf/255':>9} {'PSNR':>6} "
          f"{'SSIM':>6} {'uint8':>6}")
    for s in summaries:
        print(f"{s['attack']:>22} {s['success_rate']:>8.1%} {s['already']:>8d} {s['median_iters']:>7g} "
              f"{s['l2_255']:>8.1f} {s['linf_255']:>9.1f} {s['psnr']:>6.1f} {s['ssim']:>6.3f} "
              f"{s['uint8_success_rate']:>6.1%}")
    print("already: fooled before any step (misclassified clean, or by PGD's random start); "
          "uint8: still fooled once saved as 8-bit pixels")
    if others:
        for r in rows_t:
            print("transfer " + ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in r.items()))
    print(f"run folder: {run.root}; figures: {', '.join(str(p) for p in paths)}")
    return 0


def _model_name(args, suffix: str) -> str:
    arch = getattr(args, f"arch{suffix.replace('-', '_')}")
    return arch or ("digitnet (seed 1)" if suffix else "digitnet (seed 0)")


# --------------------------------------------------------------------------- class visualisation
def _cmd_classviz(args) -> int:
    from cnnlab.explain import figures
    from cnnlab.explain.classviz import class_visualization, final_scores, sweep
    from cnnlab.explain.inputs import class_name, to_pixels

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
    kw = dict(l2_reg=args.l2_reg, learning_rate=args.lr, blur_every=args.blur_every or None,
              blur_sigma=args.blur_sigma, max_jitter=args.max_jitter, snapshot_every=min(args.snapshot_every, iters))
    cfg = {"arch": bundle.arch, "weights": bundle.weights, "classes": classes, "iterations": iters, **kw,
           "init": args.init_image or args.init_index, "sweep": args.sweep}
    with _start(args, "classviz", cfg) as run:
        vis = class_visualization(bundle, classes, init=init, num_iterations=iters, generator=g, **kw)
        names = [class_name(bundle, c) for c in classes]
        snaps = [(it, to_pixels(bundle, im)) for it, im in vis.snapshots]
        paths = [run.save_figure(figures.classviz_figure(snaps, [_short(n) for n in names]), "classviz")]
        rows = final_scores(bundle, vis)
        for r in rows:
            r["class"], r["pred"] = class_name(bundle, r["target"]), class_name(bundle, r["pred"])
        run.write_table("final", rows)
        run.write_table("history", vis.history)
        if args.sweep:
            its = (2, 4) if args.dry_run else (25, 100, 200, 400)
            sw = sweep(bundle, classes[0], iterations=its, generator=g, max_jitter=args.max_jitter,
                       blur_every=args.blur_every or None, blur_sigma=args.blur_sigma,
                       **({"num_iterations": 5} if args.dry_run else {}))
            grid = {k: [(lab, to_pixels(bundle, im[None])[0]) for lab, im in v] for k, v in sw["grid"].items()}
            paths.append(run.save_figure(figures.sweep_figure(grid, suptitle=names[0]), "sweep"))
        run.log_metrics(final=rows)
    for r in rows:
        print(f"class {r['target']} ({_short(r['class'], 30)}): score {r['score']:.2f}, p {r['p_target']:.3f}, "
              f"predicted {_short(r['pred'], 30)}")
    print(f"run folder: {run.root}; figures: {', '.join(str(p) for p in paths)}")
    return 0


# --------------------------------------------------------------------------- parser
def add_commands(sub) -> None:
    from cnnlab.cli import add_common

    p = sub.add_parser("explain", help="Part B: saliency maps, fooling images, attacks, class visualisation")
    esub = p.add_subparsers(dest="explain_command", metavar="METHOD")
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])

    s = esub.add_parser("saliency", help="saliency maps (course), SmoothGrad, Grad-CAM, sanity check")
    model_args(s)
    image_args(s, limit=5)
    s.add_argument("--method", choices=["saliency", "smoothgrad", "gradcam", "all"], default="saliency",
                   help="saliency (the course, default), smoothgrad, gradcam, or all three")
    s.add_argument("--target", default=None, help="class to explain (index or name); default: each image's prediction")
    s.add_argument("--layer", default=None, help="Grad-CAM layer (module name or alias; default: last conv block)")
    s.add_argument("--samples", type=int, default=25, help="SmoothGrad: noisy samples per image (default 25)")
    s.add_argument("--noise", type=float, default=0.15, help="SmoothGrad: σ as a fraction of the image's range (default 0.15)")
    s.add_argument("--sanity", action="store_true", help="model-randomisation sanity check (Adebayo et al. 2018)")
    s.add_argument("--compare", action="store_true", help="also a second network (--arch-b …; default a digit classifier of another seed)")
    model_args(s, "-b", "the second network (B-Q4)")
    add_common(s, out_default="runs/explain-saliency")
    s.set_defaults(func=_cmd_saliency)

    f = esub.add_parser("fool", help="the course's fooling images (x ← x + η·g/‖g‖)")
    model_args(f)
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
    model_args(a)
    image_args(a, limit=64)
    a.add_argument("--attack", choices=["fgsm", "ifgsm", "pgd", "all"], default="all",
                   help="all (default): FGSM, I-FGSM, PGD L∞ and PGD L2")
    a.add_argument("--norm", choices=["linf", "l2"], default="linf", help="PGD's norm (default linf)")
    a.add_argument("--eps", type=_number, default=8 / 255, help="L∞ budget in [0,1] pixel units (default 8/255)")
    a.add_argument("--eps-l2", type=_number, default=1.0, help="L2 budget in [0,1] pixel units (default 1)")
    a.add_argument("--alpha", type=_number, default=None, help="step (default ε/4 for L∞, ε/5 for L2)")
    a.add_argument("--steps", type=int, default=10, help="iterations of I-FGSM and PGD (default 10)")
    a.add_argument("--target", default=None, help="targeted: a class (index or name) or 'random'; default untargeted")
    a.add_argument("--targets-per-image", type=int, default=1, help="with --target random (default 1)")
    a.add_argument("--no-early-stop", action="store_true", help="run every step even after success")
    a.add_argument("--compare", action="store_true", help="transfer matrix with a second network (--arch-b …)")
    a.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    model_args(a, "-b", "the second network (transfer)")
    add_common(a, out_default="runs/explain-attack")
    a.set_defaults(func=_cmd_attack)

    c = esub.add_parser("classviz", help="class visualisation by gradient ascent (course algorithm)")
    model_args(c)
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
