"""Part B of ``cnnlab lab``: saliency, fooling images, attacks and class visualisation (B-Q1..B-Q11).

Two settings, chosen by what the machine has:

- **ImageNet** (the course): a user's ImageNet model (``--arch/--weights``) or SqueezeNet 1.1 when its
  torchvision weights are cached, plus VGG16 (or SqueezeNet) as the second network when cached, on
  the course's 25 images (``imagenet_val_25.npz`` under ``--data-root``), with the course's examples:
  quail → stingray; tarantula, gorilla, hourglass …; hay → snail.
- **embedded digits** (offline default): cnnlab's digit CNN trained on embedded MNIST, a second one
  of another seed as "another network"; saliency of digits, fooling 3 → 8 …, each digit visualised.

Every number in the text is read from the measurements of this run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.explain import figures
from cnnlab.explain.attacks import fgsm, ifgsm, pgd
from cnnlab.explain.classviz import class_visualization, final_scores, sweep
from cnnlab.explain.fooling import fooling_images, image_target_pairs, random_targets
from cnnlab.explain.inputs import class_name, model_input, short_name, to_pixels
from cnnlab.explain.metrics import attack_table, image_quality, keep_salient, summarize, top_share, transfer_matrix
from cnnlab.explain.saliency import grad_cam, gradcam_layer, predict, saliency_maps, smoothgrad
from cnnlab.explain.sanity import model_randomization_check, spearman
from cnnlab.models import ModelBundle
from cnnlab.report import Section
from cnnlab.runs import Run

log = logging.getLogger("cnnlab")


@dataclass
class Setup:
    """What the section runs on: two networks, images, and the course's examples for them."""

    kind: str  # "imagenet" | "digits"
    a: ModelBundle
    a_name: str
    b: ModelBundle | None
    b_name: str
    images: torch.Tensor  # uint8 (N,C,H,W)
    labels: torch.Tensor
    show: list[int]  # images of the saliency figures
    fool_pairs: list[tuple[int, int]]  # (image, target) of the B-Q5 figure
    stats_images: list[int]  # images × random targets for the fooling statistics
    targets_per_image: int
    classes: list[int]  # B-Q8
    sweep_class: int  # B-Q9
    init_pairs: list[tuple[int, int]]  # B-Q10: (image, target)
    eps: float  # attacks, pixel units
    eps_l2: float
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- choosing the setting
def _imagenet_setup(ctx) -> Setup | None:
    from cnnlab.data import load_dataset
    from cnnlab.models import build_model
    from cnnlab.models.registry import weights_cached

    npz = Path(ctx.data_root) / "imagenet_val_25.npz" if ctx.data_root else None
    if npz is None or not npz.is_file():
        return None
    nets: list[tuple[str, str, tuple | None, tuple | None]] = []
    if ctx.arch:
        nets.append((ctx.arch, ctx.weights or "DEFAULT", ctx.mean, ctx.std))
    for arch in ("squeezenet1_1", "vgg16"):
        if weights_cached(arch) and all(arch != n[0] for n in nets):
            nets.append((arch, "DEFAULT", None, None))
    if not nets:
        return None
    bundles = [build_model(a, w, mean=m, std=s, device=ctx.device) for a, w, m, s in nets[:2]]
    names = [f"{a}" + (f" ({Path(w).name})" if w not in ("DEFAULT", "NONE") else "") for a, w, _, _ in nets[:2]]
    ds = load_dataset("imagenet-val25", "test", data_root=ctx.data_root)
    n = len(ds.images)
    a = bundles[0]
    # the course's examples, found by name (images in the npz's label map, targets in the model's classes);
    # the indices of the course's file and of torchvision's ImageNet classes are the fallbacks
    hay, quail, terrier = (_image_of(ds, nm, i) for nm, i in (("hay", 0), ("quail", 1), ("Border terrier", 3)))
    stingray, gorilla, snail = (_class_of(a, nm, k) for nm, k in (("stingray", 6), ("gorilla", 366), ("snail", 113)))
    course = [("tarantula", 76), ("tick", 78), ("Yorkshire terrier", 187), ("oboe", 683), ("gorilla", 366),
              ("hourglass", 604), ("snail", 113)]
    n_cls = 7 if not (ctx.quick or ctx.dry_run) else (2 if ctx.quick else 1)
    return Setup(kind="imagenet", a=a, a_name=names[0], b=bundles[1] if len(bundles) > 1 else None,
                 b_name=names[1] if len(names) > 1 else "", images=ds.images, labels=ds.labels,
                 show=list(range(min(n, ctx.budget(5, 5, 2)))),
                 fool_pairs=[(quail, stingray), (terrier, gorilla), (hay, snail)][:ctx.budget(3, 2, 1)],
                 stats_images=list(range(min(n, ctx.budget(25, 10, 2)))), targets_per_image=ctx.budget(3, 1, 1),
                 classes=[_class_of(a, nm, k) for nm, k in course][:n_cls], sweep_class=_class_of(a, "tarantula", 76),
                 init_pairs=[(hay, snail)], eps=2 / 255, eps_l2=0.5,
                 notes=[] if len(bundles) > 1 else ["No second ImageNet network is available (no cached VGG16 or "
                                                    "SqueezeNet 1.1 weights), so B-Q4 and B-Q11 are skipped."])


def _first_name(s: str) -> str:
    return str(s).split(",")[0].strip().lower()


def _image_of(ds, name: str, default: int) -> int:
    """The first image whose label is called ``name`` (first synonym) in the npz's label map."""
    classes = ds.classes or []
    for i, y in enumerate(ds.labels.tolist()):
        if 0 <= y < len(classes) and _first_name(classes[y]) == name.lower():
            return i
    return min(default, len(ds.labels) - 1)


def _class_of(bundle: ModelBundle, name: str, default: int) -> int:
    """The model's class called ``name`` (first synonym), else ``default``."""
    for k, c in enumerate(bundle.categories or []):
        if _first_name(c) == name.lower():
            return k
    return default


def _digit_net(seed: int, quick_train: bool) -> ModelBundle:
    """The embedded digit classifier of ``seed`` (cached), or, for a dry run without a cached one, a
    digitnet trained for one epoch on 500 digits (seconds, not minutes)."""
    from cnnlab.models.pretrained import digit_classifier
    from cnnlab.runs import cache_dir

    cached = (cache_dir("pretrained") / f"digitnet-mnist-embedded-e8-s{seed}.pth").exists()
    if cached or not quick_train:
        return digit_classifier(seed=seed)
    from cnnlab.data import load_dataset
    from cnnlab.models import build_model
    from cnnlab.train import train_classifier

    train = load_dataset("mnist-embedded", "train")
    torch.manual_seed(seed)
    bundle = build_model("digitnet", "NONE")
    train_classifier(bundle.model, train.images[seed::8], train.labels[seed::8], preprocess=bundle.preprocess,
                     epochs=1, seed=seed, desc="digit classifier (dry run)")
    bundle.model.eval()
    return bundle


def _digit_setup(ctx) -> Setup:
    from cnnlab.data import load_dataset

    a, b = _digit_net(0, ctx.dry_run), _digit_net(1, ctx.dry_run)
    ds = load_dataset("mnist-embedded", "test")
    first = [int((ds.labels == d).nonzero()[0]) for d in range(10)]  # one image of each digit
    first_of = dict(enumerate(first))
    n_stats = ctx.budget(100, 30, 6)
    spread = torch.linspace(0, len(ds) - 1, n_stats).round().long().tolist()  # all classes (sorted by class)
    return Setup(kind="digits", a=a, a_name="digit CNN (seed 0)", b=b, b_name="digit CNN (seed 1)",
                 images=ds.images, labels=ds.labels, show=first if not ctx.dry_run else first[:4],
                 fool_pairs=[(first_of[3], 8), (first_of[1], 7), (first_of[4], 9), (first_of[0], 6)][:ctx.budget(4, 4, 2)],
                 stats_images=spread, targets_per_image=ctx.budget(3, 2, 1), classes=list(range(ctx.budget(10, 10, 3))),
                 sweep_class=3, init_pairs=[(first_of[4], 4), (first_of[4], 9)], eps=0.2, eps_l2=2.0)


# --------------------------------------------------------------------------- helpers
def _pix(bundle: ModelBundle, images: torch.Tensor) -> torch.Tensor:
    return to_pixels(bundle, model_input(bundle, images)).cpu()


def _pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"


# --------------------------------------------------------------------------- saliency (B-Q1..B-Q4)
def _saliency_sections(ctx, s: Setup, run: Run, g: torch.Generator) -> list[Section]:
    idx = s.show
    imgs, labels = s.images[idx], s.labels[idx]
    a = s.a
    probs = predict(a, imgs)
    pred = probs.argmax(1)
    names = [class_name(a, int(y)) for y in labels]
    titles = [f"{short_name(n)}\npred {short_name(class_name(a, int(p)))}" for n, p in zip(names, pred)]
    pix = _pix(a, imgs)
    sal = saliency_maps(a, imgs, labels)  # the course explains the true class
    sg = smoothgrad(a, imgs, labels, samples=ctx.budget(25, 10, 3), generator=g)
    layer = gradcam_layer(a)
    cam = grad_cam(a, imgs, labels, layer=layer)

    # B-Q1: where the map's mass goes
    rows = []
    for i in range(len(idx)):
        r = {"image": idx[i], "label": names[i], "pred": class_name(a, int(pred[i])), "p_pred": float(probs[i, pred[i]]),
             "top5%_share": top_share(sal[i])}
        if s.kind == "digits":
            stroke = (pix[i, 0] > 0.5)
            r["stroke_pixels"] = float(stroke.float().mean())
            r["stroke_share"] = float(sal[i][stroke].sum() / sal[i].sum())
        else:
            h, w = sal[i].shape
            centre = sal[i][h // 4:3 * h // 4, w // 4:3 * w // 4]
            r["centre_share"] = float(centre.sum() / sal[i].sum())  # central quarter of the area
        rows.append(r)
    run.write_table("saliency_per_image", rows)
    f1 = run.save_figure(figures.maps_figure(pix, {"saliency": sal}, titles), "B-Q1_saliency")
    top5 = float(np.mean([r["top5%_share"] for r in rows]))
    q1 = Section("B-Q1", "Saliency maps: show and interpret")
    q1.figure(f1, f"Saliency maps (|∂ s_y/∂x|, max over channels) of {s.a_name} for the true class.")
    q1.table(rows, "Where each map's mass lies")
    if s.kind == "digits":
        st, sp = np.mean([r["stroke_share"] for r in rows]), np.mean([r["stroke_pixels"] for r in rows])
        q1.text(f"On these {len(rows)} digits the stroke pixels (intensity > 0.5) are {_pct(sp)} of the image but "
                f"receive {_pct(st)} of the saliency mass ({st / sp:.1f}× their area share), and the 5% most salient "
                f"pixels hold {_pct(top5)} of it. The gradient is concentrated on and around the strokes, the pixels "
                "that define the digit's shape; the rest lies on background pixels where adding ink would change "
                "the class (the gap that turns a 3 into an 8, for instance).")
    else:
        cs = np.mean([r["centre_share"] for r in rows])
        q1.text(f"The central quarter of the image holds {_pct(cs)} of the saliency mass on average (25% if the "
                f"map were uniform), and the 5% most salient pixels hold {_pct(top5)} of it: the maps concentrate "
                "on the object, which ImageNet photographs mostly centre, and are speckled at pixel scale.")

    # B-Q2: limits, with numbers: noise (SmoothGrad agreement), sanity check, class-discriminativeness
    other = (labels + 1) % (len(a.categories or []) or 10)
    sal_other = saliency_maps(a, imgs, other)
    rho_other = float(np.nanmean([spearman(x, y) for x, y in zip(sal, sal_other)]))
    rho_sg = float(np.nanmean([spearman(x, y) for x, y in zip(sal, sg)]))
    rho_cam = float(np.nanmean([spearman(x, y) for x, y in zip(sal, cam)]))
    sanity = model_randomization_check(a, imgs, labels, steps=ctx.budget(5, 3, 2), generator=g)
    run.write_table("sanity_check", sanity.rows)
    f2 = run.save_figure(figures.maps_figure(pix, {"saliency": sal, "SmoothGrad": sg, f"Grad-CAM ({layer})": cam},
                                             titles, overlay=[f"Grad-CAM ({layer})"]), "B-Q2_methods")
    f3 = run.save_figure(figures.maps_figure(pix, sanity.maps, titles), "B-Q2_sanity_maps")
    f4 = run.save_figure(figures.sanity_curve(sanity.rows), "B-Q2_sanity_curve")
    last = sanity.rows[-1]
    q2 = Section("B-Q2", "Limits of the saliency map")
    q2.table([{"comparison": "saliency of true class vs of another class", "spearman": rho_other},
              {"comparison": "saliency vs SmoothGrad", "spearman": rho_sg},
              {"comparison": f"saliency vs Grad-CAM ({layer})", "spearman": rho_cam}],
             "Mean Spearman rank correlation between maps of the same images")
    q2.table(sanity.rows, "Model-randomisation sanity check (Adebayo et al. 2018): layers re-initialised from the logits down")
    q2.figure(f2, "Saliency, SmoothGrad and Grad-CAM of the same images")
    q2.figure(f3, "Saliency maps as more and more layers are randomised")
    q2.figure(f4, "Similarity to the trained model's maps")
    q2.text(
        f"- One pixel at a time: the map is a first-order, local measure; it says nothing about how pixels act "
        f"together. Maps for the true class and for another class correlate at ρ = {rho_other:.2f}: "
        + ("much of the map is the same whatever the class, i.e. it reflects the input more than the decision. "
           if rho_other > 0.5 else "the map does depend on the class asked. ")
        + f"\n- Noise: the raw map and its average over noisy copies (SmoothGrad) rank pixels alike only at "
        f"ρ = {rho_sg:.2f}: part of the raw map is pixel-level gradient noise; Grad-CAM, which works at the "
        f"resolution of `{layer}`, agrees with it at ρ = {rho_cam:.2f}.\n- Sanity: with every layer re-initialised the maps still correlate with the trained "
        f"ones at ρ = {last['spearman_mean']:.2f} (SSIM {last['ssim_mean']:.2f}); "
        + ("a sizeable part of what a map shows survives without any learnt weight: that part is the image's own "
           "structure, not the model's reasoning." if last["spearman_mean"] > 0.3 else
           "the maps do depend on the learnt weights, as a faithful explanation must.")
        + "\n- Known limits not measured here: gradients saturate (a decisive feature can have a small gradient "
        "once it is fully present) and the absolute value discards the sign (evidence for vs against).")

    # B-Q3: another use: keep only the salient pixels
    keep = {f: keep_salient(a, imgs, sal, fraction=f, generator=g) for f in (0.2, 0.5)}
    q3 = Section("B-Q3", "Other uses of the saliency map")
    q3.table([{"kept pixels": f"{f:.0%}", "most salient: prediction unchanged": k["kept_salient"],
               "random: prediction unchanged": k["kept_random"]} for f, k in keep.items()],
             "Masking the image to its most salient pixels (the rest set to the dataset mean), against random pixels")
    better = [f for f, k in keep.items() if k["kept_salient"] > k["kept_random"]]
    q3.text("Keeping only the most salient pixels preserves the prediction for "
            + ", ".join(f"{_pct(k['kept_salient'])} (random pixels: {_pct(k['kept_random'])}) at {f:.0%} kept"
                        for f, k in keep.items()) + ": "
            + ("the map does find the pixels the decision rests on. " if better else
               "on these images the map is no better than random pixels at keeping the decision. ")
            + "That is what its other uses rely on: weakly supervised localisation and segmentation (Simonyan et al. "
            "seed GrabCut with it), region-of-interest compression, data cleaning (spotting a model that looks at "
            "watermarks or background) and medical decision support.")
    out = [q1, q2, q3]

    # B-Q4: another network
    if s.b is not None:
        sal_b = saliency_maps(s.b, imgs, labels)
        pred_b = predict(s.b, imgs).argmax(1)
        rho_ab = [spearman(x, y) for x, y in zip(sal, sal_b)]
        fb = run.save_figure(figures.maps_figure(pix, {s.a_name: sal, s.b_name: sal_b}, titles), "B-Q4_two_networks")
        rows_b = [{"image": idx[i], "label": names[i], f"pred {s.a_name}": class_name(a, int(pred[i])),
                   f"pred {s.b_name}": class_name(s.b, int(pred_b[i])), "spearman A vs B": rho_ab[i],
                   "top5% A": top_share(sal[i]), "top5% B": top_share(sal_b[i])} for i in range(len(idx))]
        q4 = Section("B-Q4", "Saliency through another network")
        q4.figure(fb, f"The same images and classes through {s.a_name} and {s.b_name}")
        q4.table(rows_b)
        rab = float(np.nanmean(rho_ab))
        q4.text(f"The two networks' maps of the same image correlate at ρ = {rab:.2f} on average; the 5% most "
                f"salient pixels hold {_pct(np.mean([r['top5% A'] for r in rows_b]))} of the mass for {s.a_name} "
                f"and {_pct(np.mean([r['top5% B'] for r in rows_b]))} for {s.b_name}. "
                + ("They look at broadly the same regions, but pixel by pixel the maps differ: a saliency map "
                   "explains one network, not the image." if rab > 0.2 else
                   "Pixel by pixel they hardly agree: a saliency map explains one network, not the image."))
        out.append(q4)
    return out


# --------------------------------------------------------------------------- fooling and attacks (B-Q5..B-Q7)
def _fooling_sections(ctx, s: Setup, run: Run, g: torch.Generator) -> list[Section]:
    a = s.a
    cap = ctx.budget(100, 100, 5)
    pi = [i for i, _ in s.fool_pairs]
    res = fooling_images(a, s.images[pi], [t for _, t in s.fool_pairs], labels=s.labels[pi], max_iter=cap)
    rows = attack_table(a, res, image_ids=pi)
    run.write_table("fooling_examples", rows)
    titles = [(f"{short_name(r['label'])} (image {r['image']})",
               f"→ {short_name(r['pred'])}, {r['iterations']} it" + ("" if r["success"] else " (failed)")) for r in rows]
    f1 = run.save_figure(figures.fooling_figure(to_pixels(a, res.originals), to_pixels(a, res.images), titles),
                         "B-Q5_fooling")
    # statistics: images × random targets
    imgs, labels = s.images[s.stats_images], s.labels[s.stats_images]
    tg = random_targets(labels, s.targets_per_image, len(a.categories or []) or 10, generator=g)
    im2, lb2, t2, index = image_target_pairs(imgs, labels, tg)
    stats = fooling_images(a, im2, t2, labels=lb2, max_iter=cap)
    srows = attack_table(a, stats, image_ids=[s.stats_images[i] for i in index.tolist()])
    run.write_table("fooling_pairs", srows)
    summ = summarize(srows, "fooling image (course)")
    f2 = run.save_figure(figures.success_curve({"fooling image": (stats.iterations.numpy(), stats.success.numpy())}, cap),
                         "B-Q5_success_curve")
    q5 = Section("B-Q5", "Fooling images")
    q5.figure(f1, "Original, fooling image, difference, difference ×10 (grey = unchanged)")
    q5.table(rows, "The examples above")
    q5.table([summ], f"{len(srows)} pairs: {len(s.stats_images)} images × {s.targets_per_image} random targets, "
                     f"η = 1, cap {cap} iterations")
    q5.figure(f2, "Fraction of pairs fooled within n iterations")
    visible = not summ["psnr"] >= 35  # above ~35-40 dB a change is generally invisible (nan: nothing fooled)
    if summ["success_rate"] > 0:
        q5.text(f"{_pct(summ['success_rate'])} of the {len(srows)} image/target pairs reach the target class within "
                f"{cap} iterations, in a median of {summ['median_iters']:g} iterations; the network then gives the "
                f"target a mean probability of {summ.get('p_target', float('nan')):.2f}. The change: "
                f"{summ['l2_255']:.0f} (L2, 0–255 units), {summ['linf_255']:.1f}/255 at the most changed pixel, PSNR "
                f"{summ['psnr']:.1f} dB, SSIM {summ['ssim']:.3f}. "
                + ("With a PSNR that low the change is visible: on these images the network needs real edits (see "
                   "the difference column) before it changes its mind." if visible else
                   "At that PSNR the change is invisible to a human; only the ×10 difference shows where it went."))
    else:
        q5.text(f"None of the {len(srows)} pairs reached its target within {cap} iterations: the cap is too small "
                "for this network (the run reports these as failures instead of looping).")
    # B-Q6: consequences (transfer to another network, survival of 8-bit saving)
    q6 = Section("B-Q6", "Consequences in practice")
    tr = transfer_matrix({s.a_name: (a, stats)}, {s.a_name: a, **({s.b_name: s.b} if s.b is not None else {})})
    run.write_table("fooling_transfer", tr)
    q6.table(tr, "Fooling images made on the row's network, given to each column's network (fraction classified as "
                 "the target; 'clean': the unmodified images)")
    fooled = summ["success_rate"] * len(srows)
    text = "" if not fooled else (
        f"Saved as 8-bit pixels, {_pct(summ['uint8_success_rate'] / summ['success_rate'])} of the fooling images still "
        "fool the network" + (": the attack survives an ordinary image file. " if summ["uint8_success_rate"]
                              >= 0.9 * summ["success_rate"] else
                              "; the others sat so close to the decision boundary that rounding undid them. "))
    if s.b is not None and fooled:
        rate, base = tr[0][s.b_name], tr[0][f"{s.b_name} clean"]
        text += (f"{_pct(rate)} of them make {s.b_name} predict the same target (clean images: {_pct(base)}): "
                 + ("the course's attack is tailored to one network's gradients and mostly does not transfer. "
                    if rate < 0.5 else "the attack transfers to a network it never saw. "))
    text += ("In practice a CNN that takes inputs from people who gain by fooling it (traffic signs, face "
             "recognition, content filters, medical images) can be steered to a chosen answer"
             + (" by changes nobody would notice" if not visible else "")
             + ", and its confidence is no evidence that the answer is right: such models must be evaluated, "
             "and can be trained (adversarial training), against these inputs.")
    q6.text(text)

    # B-Q7: the alternatives, measured
    n_att = ctx.budget(100, 30, 4) if s.kind == "digits" else ctx.budget(25, 10, 2)
    ids = s.stats_images[:n_att]
    x, y = s.images[ids], s.labels[ids]
    steps = ctx.budget(20, 10, 2)
    tgt = random_targets(y, 1, len(a.categories or []) or 10, generator=g)[:, 0]
    table, results, attack_rows = [], {}, {}
    for targeted in (False, True):
        kw = dict(labels=y, targets=tgt if targeted else None)
        runs = {"FGSM": fgsm(a, x, eps=s.eps, **kw),
                "I-FGSM": ifgsm(a, x, eps=s.eps, alpha=s.eps / 4, steps=steps, **kw),
                "PGD L∞": pgd(a, x, eps=s.eps, alpha=s.eps / 4, steps=steps, norm="linf", generator=g, **kw),
                "PGD L2": pgd(a, x, eps=s.eps_l2, alpha=s.eps_l2 / 5, steps=steps, norm="l2", generator=g, **kw)}
        for name, r in runs.items():
            label = f"{name} {'targeted' if targeted else 'untargeted'}"
            attack_rows[label] = attack_table(a, r)
            table.append(summarize(attack_rows[label], label))
            results[label] = (a, r)
    table.append(summ | {"attack": "fooling image (course, targeted, unbounded)"})
    run.write_table("attacks", table)
    q7 = Section("B-Q7", "Limits of the method and alternatives")
    q7.table(table, f"{len(ids)} images; ε = {s.eps * 255:.0f}/255 (L∞) or {s.eps_l2:g} (L2, [0,1] pixels), "
                    f"{steps} steps, step ε/4 (L∞) or ε/5 (L2)")
    if s.b is not None:
        tm = transfer_matrix({k: v for k, v in results.items() if "PGD" in k or "FGSM" == k.split()[0]},
                             {s.a_name: a, s.b_name: s.b})
        run.write_table("attack_transfer", tm)
        q7.table(tm, f"Transfer: adversarial images of {s.a_name} given to {s.b_name}")
        tb = {r["crafted on"]: r for r in tm}
        f_rate, p_rate = tb["FGSM untargeted"][s.b_name], tb["PGD L∞ untargeted"][s.b_name]
        transfer_text = (f" Transfer (table): {_pct(f_rate)} of FGSM's and {_pct(p_rate)} of PGD's untargeted "
                         f"images also fool {s.b_name}"
                         + (" — the one-step attack transfers better: the iterative one fits the source network's "
                            "own quirks." if f_rate > p_rate else "."))
    else:
        transfer_text = ""
    m = ctx.budget(6, 6, 3)
    ex = {k: to_pixels(a, v[1].images[:m]) for k, v in results.items() if "untargeted" in k}
    titles = {k: figures.attack_titles(attack_rows[k], m)[1] for k in ex}
    titles["original"] = figures.attack_titles(attack_rows["FGSM untargeted"], m)[0]
    f3 = run.save_figure(figures.image_rows_figure({"original": to_pixels(a, results["FGSM untargeted"][1].originals[:m]),
                                                   **ex}, titles), "B-Q7_attacks")
    q7.figure(f3, "Untargeted adversarial images; above each, the network's prediction on it "
                  "(\"(failed)\": the attack did not change the class)")
    by = {r["attack"]: r for r in table}
    fg, pg = by["FGSM targeted"], by["PGD L∞ targeted"]
    q7.text(f"The course's method has no budget: it walks until the class flips, so its size varies per image, and it "
            f"needs the gradient (white-box). Within a fixed budget ε = {s.eps * 255:.0f}/255, one FGSM step reaches a "
            f"chosen target in {_pct(fg['success_rate'])} of the images, {steps} steps of PGD in "
            f"{_pct(pg['success_rate'])}; untargeted, FGSM fools {_pct(by['FGSM untargeted']['success_rate'])} and PGD "
            f"{_pct(by['PGD L∞ untargeted']['success_rate'])} (counting the {by['FGSM untargeted']['already']} images "
            "misclassified before any change). The L2 budget gives PSNR "
            f"{by['PGD L2 untargeted']['psnr']:.1f} dB against {by['PGD L∞ untargeted']['psnr']:.1f} dB for L∞ "
            f"(L∞ moves every pixel up to ε, L2 concentrates the change on fewer pixels). Other "
            "alternatives: C&W (optimises the smallest change), DeepFool (minimal step to the nearest boundary), "
            "black-box attacks by transfer from a surrogate network or by score/decision queries; "
            "defences: adversarial training, input purification, certified bounds." + transfer_text)
    return [q5, q6, q7]


# --------------------------------------------------------------------------- class visualisation (B-Q8..B-Q11)
def _tv(p: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels (smoothness), [0,1] units."""
    return float((p[..., 1:, :] - p[..., :-1, :]).abs().mean() + (p[..., :, 1:] - p[..., :, :-1]).abs().mean()) / 2


def _classviz_sections(ctx, s: Setup, run: Run) -> list[Section]:
    a = s.a
    iters = ctx.budget(200, 100 if s.kind == "digits" else 50, 3)
    snap = max(1, min(25, iters // 4))
    seed = ctx.seed
    vis = class_visualization(a, s.classes, num_iterations=iters, snapshot_every=snap,
                              generator=torch.Generator().manual_seed(seed))
    names = [class_name(a, c) for c in s.classes]
    fin = final_scores(a, vis)
    rows = [{"class": names[i], "score": r["score"], "p_target": r["p_target"], "predicted": class_name(a, r["pred"])}
            for i, r in enumerate(fin)]
    run.write_table("classviz", rows)
    snaps = [(it, to_pixels(a, im)) for it, im in vis.snapshots]
    f1 = run.save_figure(figures.classviz_figure(snaps, [short_name(n) for n in names]), "B-Q8_classviz")
    hits = sum(r["predicted"] == r["class"] for r in rows)
    q8 = Section("B-Q8", "Class visualisation")
    q8.figure(f1, f"Gradient ascent from noise, {iters} iterations (course defaults: λ = 1e-3, lr 5, blur σ 0.5 every "
                  f"10, jitter {vis.settings['max_jitter']} px, per-channel clamp)")
    text = (f"{hits} of {len(rows)} visualisations are classified as their class (mean confidence "
            f"{np.mean([r['p_target'] for r in rows]):.2f})"
            + (": the ascent finds, for every class, an input the network is sure about. " if hits == len(rows) else
               f" after {iters} iterations. "))
    if s.kind == "digits":
        # do they look like the class? correlation with the average test digit of each class
        mean_img = torch.stack([_pix(a, s.images[s.labels == c]).mean(0) for c in range(10)]).flatten(1)
        vis_px = to_pixels(a, vis.images).clamp(0, 1).flatten(1)
        corr = torch.corrcoef(torch.cat([vis_px, mean_img]))[:len(vis_px), len(vis_px):]  # vis × class means
        own = [float(corr[i, c]) for i, c in enumerate(s.classes)]
        best = sum(int(corr[i].argmax()) == c for i, c in enumerate(s.classes))
        for r, o in zip(rows, own):
            r["corr_with_class_mean"] = o
        text += (f"Do they look like the class? Each visualisation's correlation with the average test digit of its "
                 f"class is {np.mean(own):.2f} on average, and the average digit it resembles most is its own class "
                 f"for {best} of {len(rows)} classes: "
                 + ("the images carry the class's shape, though as fragments and textures, not as a clean digit."
                    if best >= len(rows) / 2 else
                    "the network is convinced by images that do not look like the class: it responds to local "
                    "evidence, not to the digit as a human sees it."))
    else:
        text += ("What to look for in the figure: repeated textures and parts of the class spread over the whole "
                 "frame rather than one coherent object, since the network scores local evidence, not a layout.")
    if a.input_size != 224:
        text += (f" Jitter is the course's 16 px at 224×224 scaled to {vis.settings['max_jitter']} px for "
                 f"{a.input_size}×{a.input_size} inputs.")
    q8.table(rows, "Final images scored by the network")
    q8.text(text)

    # B-Q9: sweep
    its = ctx.budget((25, 100, 200, 400) if s.kind == "digits" else (25, 100, 200), (10, 25, 50), (2, 3))
    default_it = iters  # the lr and λ rows use B-Q8's budget (the course's 200 in the full lab)
    sw = sweep(a, s.sweep_class, iterations=its, num_iterations=default_it, generator=torch.Generator().manual_seed(seed),
               progress=False, **({"snapshot_every": 1} if ctx.dry_run else {}))
    f2 = run.save_figure(figures.sweep_figure({k: [(lab, to_pixels(a, im[None])[0]) for lab, im in v]
                                               for k, v in sw["grid"].items()}, suptitle=class_name(a, s.sweep_class)),
                         "B-Q9_sweep")
    srows = []
    for kind, cells in sw["grid"].items():
        for lab, im in cells:
            with torch.no_grad():
                p = predict(a, im[None])[0, s.sweep_class]
            px = to_pixels(a, im[None])[0].clamp(0, 1)
            mean = torch.tensor(a.mean).view(-1, 1, 1)
            srows.append({"varied": kind, "setting": lab, "p_target": float(p),
                          "rms_from_mean": float((px - mean).pow(2).mean().sqrt()), "tv": _tv(px)})
    run.write_table("classviz_sweep", srows)
    q9 = Section("B-Q9", "Iterations, learning rate and regularisation")
    q9.figure(f2, f"One parameter varied at a time around the course defaults, same initial noise "
                  f"(rows of lr and λ after {default_it} iterations)")
    q9.table(srows, "p_target: confidence in the class; rms_from_mean: RMS distance of the pixels to the dataset "
                    "mean (what λ‖I‖² penalises); tv: mean neighbour difference (lower = smoother)")
    byk = {k: [r for r in srows if r["varied"] == k] for k in ("iterations", "learning_rate", "l2_reg")}

    def trend(rs, key):
        return f"{rs[0][key]:.3g} → {rs[-1][key]:.3g}" if rs else "n/a"

    def direction(rs, key, up: str, down: str, flat: str, tol: float = 0.05):
        if len(rs) < 2:
            return flat
        a0, a1 = rs[0][key], rs[-1][key]
        return up if a1 > a0 * (1 + tol) + 1e-9 else down if a1 < a0 * (1 - tol) - 1e-9 else flat

    it, lr, l2 = byk["iterations"], byk["learning_rate"], byk["l2_reg"]
    parts = [f"Iterations ({', '.join(r['setting'] for r in it)}): confidence {trend(it, 'p_target')}, distance "
             f"from the mean {trend(it, 'rms_from_mean')}, neighbour difference {trend(it, 'tv')}: "
             + direction(it, "rms_from_mean", "the image keeps moving away from the mean, the pattern gets stronger "
                         "with every step", "the image settles closer to the mean", "the image has settled")
             + ("." if it and it[-1]["p_target"] > 0.5 else ", and the class is not reached yet.")]
    parts.append(f"Learning rate ({', '.join(r['setting'] for r in lr)}): confidence {trend(lr, 'p_target')}, "
                 f"neighbour difference {trend(lr, 'tv')}: "
                 + (f"too small a step has not reached the class in {default_it} iterations"
                    if lr and lr[0]["p_target"] < 0.5 else "even the smallest step reaches the class")
                 + direction(lr, "tv", "; larger steps give harsher, noisier images",
                             "; larger steps give smoother images", "; the step size barely changes the texture")
                 + (f", and the largest overshoots (confidence {lr[-1]['p_target']:.2f})"
                    if lr and lr[-1]["p_target"] < 0.5 <= max(r["p_target"] for r in lr) else "") + ".")
    parts.append(f"L2 weight ({', '.join(r['setting'] for r in l2)}): distance from the mean "
                 f"{trend(l2, 'rms_from_mean')}, confidence {trend(l2, 'p_target')}: "
                 + direction(l2, "rms_from_mean", "here a larger λ does not shrink the image (the clamp dominates)",
                             "a stronger penalty pulls the image towards the dataset mean and keeps only the strongest "
                             "evidence", "over this range λ hardly changes the image")
                 + (f"; at {l2[-1]['setting']} the penalty wins over the class score (confidence "
                    f"{l2[-1]['p_target']:.2f})" if l2 and l2[-1]["p_target"] < 0.5 <= max(r["p_target"] for r in l2)
                    else "") + ".")
    q9.text(" ".join(parts))

    # B-Q10: from a real image
    ii = [i for i, _ in s.init_pairs]
    init = s.images[ii]
    vis10 = class_visualization(a, [t for _, t in s.init_pairs], init=init, num_iterations=iters,
                                snapshot_every=snap, generator=torch.Generator().manual_seed(seed), progress=False)
    p0 = predict(a, init)
    fin10 = final_scores(a, vis10)
    start_px = _pix(a, init)
    rows10 = []
    for j, (i, t) in enumerate(s.init_pairs):
        q = image_quality(start_px[j], to_pixels(a, vis10.images[j:j + 1])[0].clamp(0, 1))
        rows10.append({"image": i, "label": class_name(a, int(s.labels[i])), "target": class_name(a, t),
                       "p_target start": float(p0[j, t]), "p_target end": fin10[j]["p_target"],
                       "ssim to start": q["ssim"], "psnr to start": q["psnr"]})
    run.write_table("classviz_from_image", rows10)
    snaps10 = [(it, to_pixels(a, im)) for it, im in vis10.snapshots]
    f3 = run.save_figure(figures.classviz_figure(snaps10, [f"{short_name(r['label'])}→{short_name(r['target'])}" for r in rows10]),
                         "B-Q10_from_image")
    q10 = Section("B-Q10", "Starting from a real image (init_img)")
    q10.figure(f3, "Gradient ascent starting from a real image")
    q10.table(rows10)
    kept = np.mean([r["ssim to start"] for r in rows10])
    early_it = min((it for it, _ in vis10.snapshots if it > 1), default=None)
    early = ""
    if early_it is not None and early_it < iters:
        im_e = to_pixels(a, vis10.at(early_it)).clamp(0, 1)
        ss_e = [image_quality(start_px[j], im_e[j])["ssim"] for j in range(len(rows10))]
        p_e = [h["p_target"] for h in vis10.history if h["iteration"] == early_it]
        early = (f" Already at iteration {early_it} the SSIM is " + ", ".join(f"{v:.2f}" for v in ss_e)
                 + " with target confidence " + ", ".join(f"{v:.2f}" for v in p_e) + ".")
    q10.text(f"After {iters} iterations the SSIM to the starting image is "
             + ", ".join(f"{r['ssim to start']:.2f}" for r in rows10) + " and the confidence in the target went "
             + ", ".join(f"{r['p_target start']:.2f} → {r['p_target end']:.2f}" for r in rows10) + "." + early + " "
             + ("Much of the original survives: the ascent paints the class's evidence into a real scene, which "
                "shows what the network would need to see there, in context; with the image's own class it "
                "exaggerates the features the network already relies on (DeepDream-like)." if kept > 0.5 else
                "Little of the original structure is left after the course's number of iterations; the earlier "
                "snapshots (figure) keep more of the scene, which is the point of starting from a real image: the "
                "class's features drawn into a real context, or, with the image's own class, exaggerated.")
             + " Towards another class it is a fooling image without a budget on the change.")
    out = [q8, q9, q10]

    # B-Q11: the other network
    if s.b is not None:
        visb = class_visualization(s.b, s.classes, num_iterations=iters, snapshot_every=snap,
                                   generator=torch.Generator().manual_seed(seed), progress=False)
        finb = final_scores(s.b, visb)
        cross_ab = predict(s.b, vis.images)  # A's visualisations judged by B
        cross_ba = predict(a, visb.images)
        rows11 = [{"class": names[i], f"p {s.b_name} (own)": finb[i]["p_target"],
                   f"p {s.a_name} on {s.b_name}'s image": float(cross_ba[i, c]),
                   f"p {s.b_name} on {s.a_name}'s image": float(cross_ab[i, c])} for i, c in enumerate(s.classes)]
        run.write_table("classviz_other_network", rows11)
        f4 = run.save_figure(figures.image_rows_figure({s.a_name: to_pixels(a, vis.images),
                                                        s.b_name: to_pixels(s.b, visb.images)},
                                                       {s.a_name: [short_name(n) for n in names]}), "B-Q11_two_networks")
        own = np.mean([r[f"p {s.b_name} (own)"] for r in rows11])
        cross = np.mean([r[f"p {s.b_name} on {s.a_name}'s image"] for r in rows11])
        q11 = Section("B-Q11", "Class visualisation with another network")
        q11.figure(f4, f"The same classes, same seed, through {s.a_name} (top) and {s.b_name} (bottom)")
        q11.table(rows11)
        q11.text(f"{s.b_name} reaches its own targets with mean confidence {own:.2f}; the images made for {s.a_name} "
                 f"get a mean confidence of {cross:.2f} from {s.b_name}: "
                 + ("the visualisations carry class features that both networks use, although the two images of a "
                    "class differ pixel by pixel (figure)." if cross > 0.5 else
                    "much of each image is specific to the network that made it (its own shortcuts), which is why "
                    "such images explain a model rather than a class."))
        out.append(q11)
    return out


# --------------------------------------------------------------------------- entry point
def run_lab(ctx) -> list[Section]:
    s = _imagenet_setup(ctx) or _digit_setup(ctx)
    out = ctx.part_dir("B-explain")
    cfg = {"setting": s.kind, "network_a": s.a_name, "network_b": s.b_name or None, "quick": ctx.quick,
           "dry_run": ctx.dry_run, "eps": s.eps, "eps_l2": s.eps_l2}
    run = Run.create(out.resolve(), "lab B", cfg, ctx.seed)  # absolute figure paths, whatever --out is
    try:
        g = torch.Generator().manual_seed(ctx.seed)
        intro = Section("B-Q0", "Setting")
        intro.text(f"Networks: **{s.a_name}**" + (f" and **{s.b_name}** (B-Q4, B-Q11)" if s.b is not None else "")
                   + f"; images: {'the course’s 25 ImageNet validation images' if s.kind == 'imagenet' else 'embedded MNIST test digits'}."
                   + ("" if s.kind == "imagenet" else " No ImageNet model and images were available (give "
                      "`--arch/--weights` and `--data-root` with imagenet_val_25.npz for the course's setting), so "
                      "the part runs on the embedded default."))
        for n in s.notes:
            intro.text(n)
        sections = [intro] + _saliency_sections(ctx, s, run, g) + _fooling_sections(ctx, s, run, g) \
            + _classviz_sections(ctx, s, run)
        run.log_metrics(setting=s.kind, sections=[x.qid for x in sections])
        return sections
    finally:
        run.close()
