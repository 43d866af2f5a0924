"""Part A of ``cnnlab lab``.

Embedded offline default (no ImageNet weights needed): a digit CNN pretrained by cnnlab on the
embedded MNIST subset (the large source) is transferred to few labelled UCI digits (the small
target: 10 per class), against the same network trained from scratch on those few.
With ImageNet weights (``--arch/--weights``, or VGG16's cached) and 15 Scene under ``--data-root``,
the course's study runs as well: that network → 15 Scene.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cnnlab.data import load_dataset
from cnnlab.models import build_model
from cnnlab.models.pretrained import digit_classifier
from cnnlab.models.registry import weights_cached
from cnnlab.report import Section, pct
from cnnlab.report.claims import Comparison, accuracy_margin, compare_accuracies
from cnnlab.runs import Run
from cnnlab.transfer import figures
from cnnlab.transfer.inspect import first_conv_maps, last_layer, parameter_table, top_k
from cnnlab.transfer.study import TransferConfig, learning_curve, run_transfer

log = logging.getLogger("cnnlab")


def imagenet_model(ctx):
    """The user's ImageNet model for parts A/B, else VGG16 when its weights are cached, else None."""
    if ctx.weights:
        arch = ctx.arch or "vgg16"
        return build_model(arch, ctx.weights, mean=ctx.mean, std=ctx.std, device=ctx.device)
    arch = ctx.arch or "vgg16"
    if weights_cached(arch):
        return build_model(arch, "DEFAULT", device=ctx.device)
    return None


def uses_course_data(ctx) -> bool:
    """Whether this part will run the course's 15 Scene study (checked without loading anything)."""
    has_model = bool(ctx.weights) or weights_cached(ctx.arch or "vgg16")
    return has_model and bool(ctx.data_root) and (Path(ctx.data_root) / "15scene").is_dir()


def run_lab(ctx) -> list[Section]:
    out = ctx.part_dir("A-transfer")
    run = Run.create(out, "lab-A", {"quick": ctx.quick, "dry_run": ctx.dry_run, "seed": ctx.seed}, ctx.seed)
    try:
        return _run(ctx, run)
    finally:
        run.close()


def _run(ctx, run: Run) -> list[Section]:
    b = ctx.budget
    source = digit_classifier("mnist-embedded", epochs=b(6, 3, 1), seed=ctx.seed, device=ctx.device)
    imnet = imagenet_model(ctx)
    sections = _inspect_sections(ctx, run, source, imnet)

    cfg = TransferConfig(dataset="digits", arch="digitnet", weights=source.weights, per_class=b(10, 10, 5),
                         input_transform="digits_as_mnist", Cs=b([1e-3, 1e-2, .1, 1, 10, 100, 1000], [.01, 1, 100], [1]),
                         cv=b(5, 3, 2), head_epochs=b(60, 30, 2), finetune_epochs=b(30, 10, 1),
                         scratch_epochs=b(40, 15, 1), seed=ctx.seed)
    sub = Run.create(Path(run.root) / "digits-study", "transfer", cfg, ctx.seed)
    try:
        res = run_transfer(cfg, source, sub)
        lc = learning_curve(source, cfg, sub, b([2, 5, 10, 20, 50], [3, 10], []), scratch_epochs=b(40, 15, 1))
        if lc:
            res["figures"]["learning_curve"] = sub.save_figure(figures.learning_curve(lc), "learning_curve")
    finally:
        sub.close()
    res["learning_curve"] = lc
    res["source_test_acc"] = source.extra.get("test_acc")
    study_name = ("digit CNN pretrained on embedded MNIST (4,000 images) → UCI digits "
                  f"({res['n_train']} labelled training images, {res['n_test']} test)")
    real = None
    if imnet is not None and ctx.data_root and (Path(ctx.data_root) / "15scene").is_dir():
        real = _imagenet_study(ctx, run, imnet)
    sections.insert(0, setup_section(imnet, real, cfg))
    sections += study_sections(res, study_name, real)
    run.log_metrics(digits_study={k: v for k, v in res.items() if k != "figures"}, imagenet_study=real)
    return sections


def setup_section(imnet, real: dict | None, cfg: TransferConfig) -> Section:
    """A-setup: which data and networks this run used, and its budget."""
    digits = (f"**The embedded study**: cnnlab's digit CNN pretrained on 4,000 embedded MNIST digits, transferred to "
              f"{cfg.per_class} labelled UCI digits per class (new head {cfg.head_epochs} epochs, fine-tuning "
              f"{cfg.finetune_epochs}, from scratch {cfg.scratch_epochs}; C from {len(cfg.Cs)} values by "
              f"{cfg.cv}-fold CV).")
    if real is not None:
        course = (f" **The course's study**: {real['arch']} ({Path(str(real['weights'])).name}) on 15 Scene from "
                  f"`--data-root` ({real['n_train']} train / {real['n_test']} test images).")
    elif imnet is not None:
        course = (f" {imnet.arch} ImageNet weights were given, but `--data-root` holds no 15scene/ folder: the "
                  "course's 15 Scene study is skipped.")
    else:
        course = (" No ImageNet weights were available (`--arch/--weights/--mean/--std`, or VGG16's cached "
                  "weights) with `--data-root` holding 15scene/: the course's 15 Scene study is skipped.")
    return Section("A-setup", "Data and budget").text(digits + course)


def _imagenet_study(ctx, run: Run, bundle) -> dict:
    b = ctx.budget
    cfg = TransferConfig(dataset="15scene", arch=bundle.arch, weights=bundle.weights, mean=bundle.mean, std=bundle.std,
                         per_class=b(None, 30, 4), Cs=b([0.1, 0.3, 1, 3, 10, 30, 100], [1, 10], [1]),
                         finetune_epochs=b(2, 0, 0), scratch_epochs=b(2, 0, 0), head_epochs=b(60, 20, 2),
                         data_root=str(ctx.data_root), seed=ctx.seed)
    sub = Run.create(Path(run.root) / "15scene-study", "transfer", cfg, ctx.seed)
    try:
        res = run_transfer(cfg, bundle, sub)
    finally:
        sub.close()
    return res


# --------------------------------------------------------------------------- A-Q1..Q4
def _inspect_sections(ctx, run: Run, source, imnet) -> list[Section]:
    vgg = build_model("vgg16", "NONE")  # counting parameters needs no weights
    rows = parameter_table(vgg.model, 224)
    total = rows[-1]["parameters"]
    fc = sum(r["parameters"] for r in rows if r["type"] == "Linear")
    run.write_table("vgg16_parameters", rows)
    q1 = Section("A-Q1", "Number of parameters").text(
        f"Counted layer by layer on torchvision's VGG16: **{total:,} parameters**, of which the three fully "
        f"connected layers hold {fc:,} ({pct(fc / total)}); fc6 alone (25088→4096) holds "
        f"{next(r['parameters'] for r in rows if r['layer'] == 'classifier.0'):,}. The 13 convolutions hold "
        f"{total - fc:,}. `cnnlab inspect --arch ARCH` prints this table for any model.")
    q1.table([{k: r.get(k, "") for k in ("layer", "type", "shape", "output", "parameters")} for r in rows],
             caption="VGG16, parameters per layer (output shape for a 224×224 input)")
    own = parameter_table(source.model, 28, 1)
    q1.table(own, caption="cnnlab's digit CNN (the embedded default's pretrained network)")
    ll = last_layer(vgg.model)
    del vgg
    q2 = Section("A-Q2", "Size and meaning of the last layer").text(
        f"VGG16's last layer `{ll['layer']}` is a {ll['type']} with **{ll['outputs']} outputs**: one score (logit) "
        "per ImageNet-1k class; a softmax turns them into class probabilities. Example classes from the weights' "
        "metadata: " + ", ".join(_imagenet_categories()[:5]) + ", …")
    dl = last_layer(source.model)
    q2.text(f"The embedded default's digit CNN ends in `{dl['layer']}` with {dl['outputs']} outputs, one per digit.")

    q3 = Section("A-Q3", "Top-5 predictions on images")
    q4 = Section("A-Q4", "Activation maps after the first convolution")
    test = load_dataset("mnist-embedded", "test")
    shown = figures.varied_examples(test.labels, 8)  # eight different digits
    imgs, labels = test.images[shown], test.labels[shown]
    preds = top_k(source, imgs, 5)
    f = run.save_figure(figures.topk_figure(imgs, preds, [str(int(y)) for y in labels]), "top5_digits")
    correct = sum(p[0][0] == str(int(y)) for p, y in zip(preds, labels))
    q3.text(f"The pretrained digit CNN on 8 held-out MNIST digits: top-1 correct on {correct}/8; the mean top-1 "
            f"probability is {pct(sum(p[0][1] for p in preds) / len(preds))}.").figure(f, "top-5 classes per image")
    name, maps = first_conv_maps(source, imgs[0])
    f = run.save_figure(figures.feature_maps(imgs[0], maps, f"digit CNN, {maps.shape[0]} maps after `{name}` + ReLU"),
                        "conv1_maps_digit")
    q4.figure(f, "activation maps of the digit CNN's first convolution")
    active = (maps.flatten(1).amax(1) > 0).float().mean().item()
    q4.text(f"{maps.shape[0]} maps after the first convolution; {pct(active)} of them respond somewhere on this "
            "digit. First-layer filters act as oriented edge and stroke detectors: the maps light up along the "
            "strokes' borders at different orientations.")
    if imnet is not None and ctx.data_root and (Path(ctx.data_root) / "imagenet_val_25.npz").is_file():
        val = load_dataset("imagenet-val25", "test", data_root=ctx.data_root)
        imgs = val.images[:8]
        preds = top_k(imnet, imgs, 5)
        truths = [val.classes[int(y)] for y in val.labels[:8]]
        hit1 = sum(p[0][0] == t for p, t in zip(preds, truths))
        all_preds = top_k(imnet, val.images, 5)
        all_truth = [val.classes[int(y)] for y in val.labels]
        t1 = sum(p[0][0] == t for p, t in zip(all_preds, all_truth)) / len(all_truth)
        t5 = sum(t in [n for n, _ in p] for p, t in zip(all_preds, all_truth)) / len(all_truth)
        f = run.save_figure(figures.topk_figure(imgs, preds, truths), "top5_imagenet")
        q3.text(f"{imnet.arch} ({Path(imnet.weights).name}) on the course's 25 ImageNet images: top-1 "
                f"{pct(t1)}, top-5 {pct(t5)} ({hit1}/8 top-1 correct in the figure).").figure(f, f"{imnet.arch}: top-5")
        name, maps = first_conv_maps(imnet, val.images[0])
        f = run.save_figure(figures.feature_maps(val.images[0], maps[:64], f"{imnet.arch}: maps after `{name}`"),
                            "conv1_maps_imagenet")
        q4.figure(f, f"{imnet.arch}: activation maps after the first convolution")
    else:
        q3.text("With ImageNet weights (`--weights`, or VGG16's cached) and `--data-root` holding "
                "imagenet_val_25.npz, this section also shows that network's top-5 on the course's images. "
                "`cnnlab inspect --arch vgg16 --images my/photos` does it for your own pictures.")
    return [q1, q2, q3, q4]


def _imagenet_categories() -> list[str]:
    import torchvision.models as tvm

    return list(tvm.VGG16_Weights.IMAGENET1K_V1.meta["categories"])


# --------------------------------------------------------------------------- A-Q5..Q11
def study_sections(res: dict, name: str, real: dict | None) -> list[Section]:
    sel = res["selected"]
    lc = res.get("learning_curve", [])
    q5 = Section("A-Q5", "Why not train the network directly on the small set?")
    scratch = res.get("scratch")
    q5.text(f"Study: {name}. The pretrained features + LinearSVC (layer `{sel['layer']}`, C={sel['C']:g}, both "
            f"chosen by cross-validation on the train split) reach **{pct(sel['test_acc'])}** test accuracy.")
    if scratch:
        q5.text(scratch_text(sel["test_acc"], scratch, res["n_train"], res["n_test"]))
    if "curves" in res["figures"]:
        q5.figure(res["figures"]["curves"], "train (dashed) and test (solid) accuracy per epoch; dotted: the SVM "
                  "on pretrained features")
    q6 = Section("A-Q6", "How does pretraining on a large set help?")
    q6.text("Pretraining learns general features (strokes, edges, textures, parts) from many images; on the "
            "small set only a linear classifier is learned on top, which needs few examples.")
    if lc:
        rows = {}
        for r in lc:
            rows.setdefault(r["per_class"], {"labelled per class": r["per_class"]})[r["method"]] = r["test_acc"]
        q6.table(list(rows.values()), caption="test accuracy vs labelled training images per class")
        q6.figure(res["figures"]["learning_curve"], "transfer vs from scratch as the labelled set grows")
        q6.text(learning_curve_text(lc, res["n_test"], scratch_epochs=(scratch or {}).get("epochs")))
    q7 = Section("A-Q7", "Limits of feature extraction")
    worst = sorted(res.get("per_class_rows", []) or [], key=lambda r: r["accuracy"])[:3]
    q7.text("Features are frozen: they encode what the source task needed. When the target domain differs "
            "(other statistics, other classes), some classes are poorly separated; the remedies are fine-tuning "
            "and more target data (A-Q5 and A-Q6 measure both on this run's data). The model must also be run at its own input size and normalisation, "
            "and large pretrained networks are expensive to run.")
    if real:
        q7.text(f"On 15 Scene the pretrained ImageNet network reaches {pct(real['selected']['test_acc'])}; "
                "its confusion matrix (A-Q11 section) shows which scene classes the ImageNet features mix up.")
    if worst:
        q7.table(worst, caption="hardest classes")
    q8 = Section("A-Q8", "Impact of the layer")
    by_layer = {}
    for r in res.get("svm_rows", []):
        cur = by_layer.get(r["layer"])
        if cur is None or r["cv_acc"] > cur["cv_acc"]:
            by_layer[r["layer"]] = r
    q8.table([{"layer": k, "dim": v["dim"], "best C (by CV)": v["C"], "cv_acc": v["cv_acc"], "test_acc": v["test_acc"]}
              for k, v in by_layer.items()], caption=f"{name}: each layer at its CV-chosen C")
    q8.figure(res["figures"]["svm_grid"], "test accuracy for every (layer, C); red: the CV choice")
    if real:
        q8.figure(real["figures"]["svm_grid"], f"{real['arch']} on 15 Scene: every (layer, C)")
    q9 = Section("A-Q9", "Grayscale images into an RGB network")
    q9.text("15 Scene is grayscale; ImageNet networks expect 3 channels. cnnlab replicates the gray channel 3× "
            "when decoding (R = G = B), so the network sees a valid gray RGB image with its usual normalisation. "
            "The alternative — changing the first convolution to 1 input channel by summing its weights over the "
            "RGB axis — is equivalent for gray inputs up to the per-channel normalisation.")
    q10 = Section("A-Q10", "Using the network itself as the classifier")
    rows = [{"method": "LinearSVC on features (CV-chosen)", "test_acc": sel["test_acc"]}]
    if "new_head" in res:
        rows.append({"method": f"new final layer, frozen backbone ({res['new_head']['epochs']} epochs)",
                     "test_acc": res["new_head"]["test_acc"]})
    if "finetune" in res:
        rows.append({"method": f"fine-tune the whole network ({res['finetune']['epochs']} epochs)",
                     "test_acc": res["finetune"]["test_acc"]})
    if scratch:
        rows.append({"method": f"same network from scratch ({scratch['epochs']} epochs)", "test_acc": scratch["test_acc"]})
    q10.text("Yes: replace the last layer by a new one with one output per target class and train it, either "
             "with the backbone frozen (a linear classifier like the SVM, trained with cross-entropy) or "
             "updating every layer (fine-tuning, with a small learning rate so the pretrained features are "
             "adjusted, not destroyed).").table(rows, caption=name)
    if real:
        rr = [{"method": "LinearSVC (CV-chosen)", "test_acc": real["selected"]["test_acc"]}]
        for k, lab in (("new_head", "new final layer, frozen backbone"), ("finetune", "fine-tune whole network"),
                       ("scratch", "from scratch")):
            if k in real:
                rr.append({"method": lab, "test_acc": real[k]["test_acc"]})
        q10.table(rr, caption=f"{real['arch']} → 15 Scene")
    q11 = Section("A-Q11", "Going further: C, layers, PCA")
    q11.text(f"Layer and C are chosen by cross-validation on the train split only; the test split never "
             f"takes part. Course default (layer `{res.get('course_default', {}).get('layer', '?')}`, C=1): "
             f"{pct(res.get('course_default', {}).get('test_acc', float('nan')))}; CV choice: "
             f"{pct(sel['test_acc'])}.")
    q11.figure(res["figures"]["confusion"], "confusion matrix of the CV-chosen classifier")
    if res.get("pca"):
        q11.table(res["pca"], caption="PCA before the SVM: time and accuracy (C fixed at the CV choice)")
    if real:
        rs = real["selected"]
        q11.text(f"**{real['arch']} → 15 Scene** ({real['n_train']} train / {real['n_test']} test images): CV picks "
                 f"`{rs['layer']}` with C={rs['C']:g} → **{pct(rs['test_acc'])}** test accuracy "
                 f"(course default {pct(real.get('course_default', {}).get('test_acc', float('nan')))}). "
                 f"Feature extraction took {real['extract_seconds']:.0f} s, the whole layer × C sweep "
                 f"{real['svm_sweep_seconds']:.0f} s.")
        q11.figure(real["figures"]["confusion"], f"{real['arch']} on 15 Scene: confusion matrix")
        if real.get("pca"):
            q11.table(real["pca"], caption=f"{real['arch']} on 15 Scene: PCA before the SVM")
    return [q5, q6, q7, q8, q9, q10, q11]


# --------------------------------------------------------------------------- sentences from numbers
def scratch_text(svm_test: float, scratch: dict, n_train: int, n_test: int) -> str:
    """A-Q5: from scratch against the pretrained features, and whether it overfits (train vs test)."""
    vs = compare_accuracies(svm_test, scratch["test_acc"], n_test)
    fit = compare_accuracies(scratch["final_train_acc"], scratch["test_acc"], n_train, n_test)
    return (f"The same architecture trained from scratch on the same {n_train} images for {scratch['epochs']} "
            f"epochs reaches {pct(scratch['test_acc'])} test accuracy (train accuracy "
            f"{pct(scratch['final_train_acc'])}). "
            + vs.says("The pretrained features do better",
                      "Here training from scratch does *better* than the pretrained features",
                      "No clear difference between the two") + f" (threshold {vs.threshold}). "
            + fit.says("From scratch, the network fits its training images clearly better than new ones: with so few "
                       "labelled examples it has many more parameters than examples to constrain them",
                       "Its test accuracy is above its train accuracy (small sets are noisy)",
                       "Its train and test accuracies show no clear gap: no sign of overfitting at this budget")
            + f" (threshold {fit.threshold}).")


def learning_curve_text(rows: list[dict], n_test: int, scratch_epochs: int | None = None) -> str:
    """A-Q6: transfer against from scratch at the smallest and the largest labelled budget, and whether
    the gap between them changes beyond the noise of both differences."""
    by_k: dict[int, dict[str, float]] = {}
    for r in rows:
        by_k.setdefault(r["per_class"], {})["svm" if "SVM" in r["method"] else "scratch"] = r["test_acc"]
    ks = sorted(k for k, v in by_k.items() if len(v) == 2)
    if not ks:
        return ""
    lo, hi = ks[0], ks[-1]
    g_lo = by_k[lo]["svm"] - by_k[lo]["scratch"]
    text = (f"With {lo} labelled images per class, transfer gets {pct(by_k[lo]['svm'])} against "
            f"{pct(by_k[lo]['scratch'])} from scratch")
    if hi == lo:
        return text + "."
    g_hi = by_k[hi]["svm"] - by_k[hi]["scratch"]
    margin = (accuracy_margin(by_k[lo]["svm"], by_k[lo]["scratch"], n_test) ** 2
              + accuracy_margin(by_k[hi]["svm"], by_k[hi]["scratch"], n_test) ** 2) ** 0.5
    c = Comparison(g_lo, g_hi, margin, f"95% CI of the difference of the two gaps, n = {n_test:,} test images")
    budget = ("; from scratch trains for the same number of optimisation steps at every size, so small sets get "
              "more epochs" + (f" than the {scratch_epochs} of A-Q5" if scratch_epochs else ""))
    return (text + f"; with {hi}, {pct(by_k[hi]['svm'])} against {pct(by_k[hi]['scratch'])}. The gap (transfer − "
            f"scratch) goes from {100 * g_lo:+.1f} to {100 * g_hi:+.1f} points: "
            + c.says("it shrinks as labels grow", "it *grows* as labels grow", "no clear change")
            + f" (threshold ±{100 * margin:.1f} points){budget}.")
