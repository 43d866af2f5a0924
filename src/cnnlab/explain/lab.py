"""Part B of ``cnnlab lab``: saliency, fooling images, attacks and class visualisation (B-Q1..B-Q11).

The setting (ImageNet networks and the course's 25 images, or the embedded digits) is chosen in
:mod:`cnnlab.explain.lab_setup`; the measurements are the studies of :mod:`cnnlab.explain.study`,
the same as ``cnnlab explain``'s. This module picks the budgets and writes the sections: every
number in the text is read from the measurements of this run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from cnnlab.explain.lab_setup import Setup, choose_setup
from cnnlab.explain.study import (COURSE_LABELS, AttackConfig, ClassvizConfig, FoolingConfig, SaliencyConfig,
                                  SweepConfig, attack_study, class_likeness, classviz_study, course_attacks,
                                  fooling_study, from_image_study, random_pair_targets, saliency_measures,
                                  saliency_study, sweep_study, two_networks_study)
from cnnlab.report import Section, pct
from cnnlab.report.claims import compare_accuracies
from cnnlab.runs import Run

log = logging.getLogger("cnnlab")


# --------------------------------------------------------------------------- saliency (B-Q1..B-Q4)
def _saliency_sections(ctx, s: Setup, run: Run, g: torch.Generator) -> list[Section]:
    idx = s.show
    imgs, labels = s.images[idx], s.labels[idx]
    cfg = SaliencyConfig(methods=("saliency", "smoothgrad", "gradcam"), samples=ctx.budget(25, 10, 3), sanity=True,
                         sanity_steps=ctx.budget(5, 3, 2), show=len(idx), labels=COURSE_LABELS)
    # the course explains the true class
    res = saliency_study(run, s.a, imgs, cfg, targets=labels, labels=labels, ids=idx, second=s.b,
                         second_label=s.b_name, generator=g, table=None, figure="B-Q2_methods",
                         sanity_prefix="B-Q2_", second_in_figure=False)
    m = saliency_measures(run, s.a, imgs, labels, res, ids=idx, digits=s.kind == "digits",
                          names=(s.a_name, s.b_name), second=s.b, generator=g)

    # B-Q1: where the map's mass goes
    rows = m.rows
    top5 = float(np.mean([r["top5%_share"] for r in rows]))
    q1 = Section("B-Q1", "Saliency maps: show and interpret")
    q1.figure(m.figures["saliency"],
              f"Saliency maps (|∂ s_y/∂x|, max over channels) of {s.a_name} for the true class.")
    q1.table(rows, "Where each map's mass lies")
    if s.kind == "digits":
        st, sp = np.mean([r["stroke_share"] for r in rows]), np.mean([r["stroke_pixels"] for r in rows])
        q1.text(f"On these {len(rows)} digits the stroke pixels (intensity > 0.5) are {pct(sp, 0)} of the image but "
                f"receive {pct(st, 0)} of the saliency mass ({st / sp:.1f}× their area share), and the 5% most salient "
                f"pixels hold {pct(top5, 0)} of it. The gradient is concentrated on and around the strokes, the pixels "
                "that define the digit's shape; the rest lies on background pixels where adding ink would change "
                "the class (the gap that turns a 3 into an 8, for instance).")
    else:
        cs = np.mean([r["centre_share"] for r in rows])
        q1.text(f"The central quarter of the image holds {pct(cs, 0)} of the saliency mass on average (25% if the "
                f"map were uniform), and the 5% most salient pixels hold {pct(top5, 0)} of it: the maps concentrate "
                "on the object, which ImageNet photographs mostly centre, and are speckled at pixel scale.")

    # B-Q2: limits, with numbers: noise (SmoothGrad agreement), sanity check, class-discriminativeness
    layer, rho_other, rho_sg, rho_cam = res.layer, m.rho_other, m.rho_smoothgrad, m.rho_gradcam
    last = res.sanity.rows[-1]
    q2 = Section("B-Q2", "Limits of the saliency map")
    q2.table([{"comparison": "saliency of true class vs of another class", "spearman": rho_other},
              {"comparison": "saliency vs SmoothGrad", "spearman": rho_sg},
              {"comparison": f"saliency vs Grad-CAM ({layer})", "spearman": rho_cam}],
             "Mean Spearman rank correlation between maps of the same images")
    q2.table(res.sanity.rows, "Model-randomisation sanity check (Adebayo et al. 2018): layers re-initialised from the "
                              "logits down")
    q2.figure(res.figures["maps"], "Saliency, SmoothGrad and Grad-CAM of the same images")
    q2.figure(res.figures["sanity_maps"], "Saliency maps as more and more layers are randomised")
    q2.figure(res.figures["sanity_curve"], "Similarity to the trained model's maps")
    q2.text(
        f"- One pixel at a time: the map is a first-order, local measure; it says nothing about how pixels act "
        f"together. Maps for the true class and for another class correlate at ρ = {rho_other:.2f}: "
        + class_map_text(rho_other)
        + f"\n- Noise: the raw map and its average over noisy copies (SmoothGrad) rank pixels alike only at "
        f"ρ = {rho_sg:.2f}: part of the raw map is pixel-level gradient noise; Grad-CAM, which works at the "
        f"resolution of `{layer}`, agrees with it at ρ = {rho_cam:.2f}.\n- Sanity: with every layer re-initialised "
        f"the maps still correlate with the trained ones at ρ = {last['spearman_mean']:.2f} (SSIM "
        f"{last['ssim_mean']:.2f}); " + sanity_text(last["spearman_mean"])
        + "\n- Known limits not measured here: gradients saturate (a decisive feature can have a small gradient "
        "once it is fully present) and the absolute value discards the sign (evidence for vs against).")

    # B-Q3: another use: keep only the salient pixels
    keep = m.keep
    q3 = Section("B-Q3", "Other uses of the saliency map")
    q3.table([{"kept pixels": f"{f:.0%}", "most salient: prediction unchanged": k["kept_salient"],
               "random: prediction unchanged": k["kept_random"]} for f, k in keep.items()],
             "Masking the image to its most salient pixels (the rest set to the dataset mean), against random pixels")
    q3.text(keep_salient_text(keep, len(imgs))
            + " That is what its other uses rely on: weakly supervised localisation and segmentation (Simonyan et al. "
            "seed GrabCut with it), region-of-interest compression, data cleaning (spotting a model that looks at "
            "watermarks or background) and medical decision support.")
    out = [q1, q2, q3]

    # B-Q4: another network
    if s.b is not None:
        rows_b, rab = m.second_rows, m.rho_second
        q4 = Section("B-Q4", "Saliency through another network")
        q4.figure(m.figures["second"], f"The same images and classes through {s.a_name} and {s.b_name}")
        q4.table(rows_b)
        q4.text(f"The two networks' maps of the same image correlate at ρ = {rab:.2f} on average; the 5% most "
                f"salient pixels hold {pct(np.mean([r['top5% A'] for r in rows_b]), 0)} of the mass for {s.a_name} "
                f"and {pct(np.mean([r['top5% B'] for r in rows_b]), 0)} for {s.b_name}. "
                + two_networks_maps_text(rab))
        out.append(q4)
    return out


# --------------------------------------------------------------------------- fooling and attacks (B-Q5..B-Q7)
def _fooling_sections(ctx, s: Setup, run: Run, g: torch.Generator) -> list[Section]:
    a = s.a
    cap = ctx.budget(100, 100, 5)
    cfg = FoolingConfig(max_iter=cap)
    pi = [i for i, _ in s.fool_pairs]
    ex = fooling_study(run, a, s.images[pi], s.labels[pi], torch.tensor([[t] for _, t in s.fool_pairs]), cfg, ids=pi,
                       table="fooling_examples", figure="B-Q5_fooling", show=None, failed=" (failed)", curve=None)
    # statistics: images × random targets
    imgs, labels = s.images[s.stats_images], s.labels[s.stats_images]
    tg = random_pair_targets(a, imgs, labels, s.targets_per_image, g)
    st = fooling_study(run, a, imgs, labels, tg, cfg, ids=s.stats_images, label="fooling image (course)",
                       table="fooling_pairs", figure=None, curve="B-Q5_success_curve", curve_label="fooling image",
                       transfer={s.a_name: a, **({s.b_name: s.b} if s.b is not None else {})})
    rows, srows, summ = ex.rows, st.rows, st.summary
    q5 = Section("B-Q5", "Fooling images")
    q5.figure(ex.figures["fooling"], "Original, fooling image, difference, difference ×10 (grey = unchanged)")
    q5.table(rows, "The examples above")
    q5.table([summ], f"{len(srows)} pairs: {len(s.stats_images)} images × {s.targets_per_image} random targets, "
                     f"η = 1, cap {cap} iterations")
    q5.figure(st.figures["curve"], "Fraction of pairs fooled within n iterations")
    visible = not summ["psnr"] >= 35  # above ~35-40 dB a change is generally invisible (nan: nothing fooled)
    if summ["success_rate"] > 0:
        q5.text(f"{pct(summ['success_rate'], 0)} of the {len(srows)} image/target pairs reach the target class within "
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
    tr = st.transfer
    q6.table(tr, "Fooling images made on the row's network, given to each column's network (fraction classified as "
                 "the target; 'clean': the unmodified images)")
    fooled = summ["success_rate"] * len(srows)
    text = "" if not fooled else uint8_text(summ["uint8_success_rate"] / summ["success_rate"])
    if s.b is not None and fooled:
        text += fooling_transfer_text(tr[0][s.b_name], tr[0][f"{s.b_name} clean"], int(tr[0]["n_fooled"]), s.b_name)
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
    tgt = random_pair_targets(a, x, y, 1, g)[:, 0]
    # every attack takes its whole budget (no early stop): transfer rates then compare equal budgets, not an
    # attack stopped at its first success against one that kept going
    att = attack_study(run, a, x, AttackConfig(course_attacks(), eps=s.eps, eps_l2=s.eps_l2, steps=steps,
                                               early_stop=False), labels=y,
                       targets=tgt, generator=g, table="attacks",
                       extra_rows=[summ | {"attack": "fooling image (course, targeted, unbounded)"}],
                       figure="B-Q7_attacks", examples=ctx.budget(6, 6, 3),
                       transfer={s.a_name: a, s.b_name: s.b} if s.b is not None else None,
                       transfer_table="attack_transfer")
    q7 = Section("B-Q7", "Limits of the method and alternatives")
    q7.table(att.table, f"{len(ids)} images; ε = {s.eps * 255:.0f}/255 (L∞) or {s.eps_l2:g} (L2, [0,1] pixels), "
                        f"{steps} steps, step ε/4 (L∞) or ε/5 (L2); every attack runs its whole budget (no early stop), "
                        "iterations count the steps to the first success")
    transfer_text = ""
    if att.transfer is not None:
        q7.table(att.transfer, f"Transfer: adversarial images of {s.a_name} given to {s.b_name}")
        tb = {r["crafted on"]: r for r in att.transfer}
        transfer_text = " " + attack_transfer_text(tb["FGSM untargeted"], tb["PGD L∞ untargeted"], s.b_name,
                                                   eps_255=s.eps * 255, steps=steps)
    q7.figure(att.figures["examples"], "Untargeted adversarial images; above each, the network's prediction on it "
                                       "(\"(failed)\": the attack did not change the class)")
    by = att.by_label
    fg, pg = by["FGSM targeted"], by["PGD L∞ targeted"]
    q7.text(f"The course's method has no budget: it walks until the class flips, so its size varies per image, and it "
            f"needs the gradient (white-box). Within a fixed budget ε = {s.eps * 255:.0f}/255, one FGSM step reaches a "
            f"chosen target in {pct(fg['success_rate'], 0)} of the images, {steps} steps of PGD in "
            f"{pct(pg['success_rate'], 0)}; untargeted, FGSM fools {pct(by['FGSM untargeted']['success_rate'], 0)} and "
            f"PGD {pct(by['PGD L∞ untargeted']['success_rate'], 0)} (counting the {by['FGSM untargeted']['already']} "
            "images misclassified before any change). The L2 budget gives PSNR "
            f"{by['PGD L2 untargeted']['psnr']:.1f} dB against {by['PGD L∞ untargeted']['psnr']:.1f} dB for L∞ "
            f"(L∞ moves every pixel up to ε, L2 concentrates the change on fewer pixels). Other "
            "alternatives: C&W (optimises the smallest change), DeepFool (minimal step to the nearest boundary), "
            "black-box attacks by transfer from a surrogate network or by score/decision queries; "
            "defences: adversarial training, input purification, certified bounds." + transfer_text)
    return [q5, q6, q7]


# --------------------------------------------------------------------------- class visualisation (B-Q8..B-Q11)
def _trend(rs, key):
    return f"{rs[0][key]:.3g} → {rs[-1][key]:.3g}" if rs else "n/a"


def _direction(rs, key, up: str, down: str, flat: str, tol: float | None = None):
    tol = FLAT if tol is None else tol
    if len(rs) < 2:
        return flat
    a0, a1 = rs[0][key], rs[-1][key]
    return up if a1 > a0 * (1 + tol) + 1e-9 else down if a1 < a0 * (1 - tol) - 1e-9 else flat


def _classviz_sections(ctx, s: Setup, run: Run) -> list[Section]:
    a = s.a
    iters = ctx.budget(200, 100 if s.kind == "digits" else 50, 3)
    cfg = ClassvizConfig(iterations=iters, snapshot_every=max(1, min(25, iters // 4)))

    def fresh() -> torch.Generator:  # each study starts from the same noise
        return torch.Generator().manual_seed(ctx.seed)

    res = classviz_study(run, a, s.classes, cfg, generator=fresh(), table=None, history=None, figure="B-Q8_classviz")
    vis = res.vis
    like = class_likeness(run, a, res, s.classes,
                          **(dict(images=s.images, labels=s.labels) if s.kind == "digits" else {}))
    rows = like.rows
    q8 = Section("B-Q8", "Class visualisation")
    q8.figure(res.figures["classviz"], f"Gradient ascent from noise, {iters} iterations (course defaults: λ = 1e-3, "
                                       f"lr 5, blur σ 0.5 every 10, jitter {vis.settings['max_jitter']} px, "
                                       "per-channel clamp)")
    text = classviz_text(like.hits, len(rows), float(np.mean([r['p_target'] for r in rows])), iters,
                         own_corr=float(np.mean(like.own_corr)) if s.kind == "digits" else None,
                         best=like.best if s.kind == "digits" else None)
    if a.input_size != 224:
        text += (f" Jitter is the course's 16 px at 224×224 scaled to {vis.settings['max_jitter']} px for "
                 f"{a.input_size}×{a.input_size} inputs.")
    q8.table(rows, "Final images scored by the network")
    q8.text(text)

    # B-Q9: sweep; the lr and λ rows use B-Q8's budget (the course's 200 in the full lab)
    its = ctx.budget((25, 100, 200, 400) if s.kind == "digits" else (25, 100, 200), (10, 25, 50), (2, 3))
    sw = sweep_study(run, a, s.sweep_class, SweepConfig(iterations=its, num_iterations=iters,
                                                         snapshot_every=1 if ctx.dry_run else 25),
                     generator=fresh(), progress=False, figure="B-Q9_sweep", table="classviz_sweep")
    srows = sw.rows
    q9 = Section("B-Q9", "Iterations, learning rate and regularisation")
    q9.figure(sw.figures["sweep"], f"One parameter varied at a time around the course defaults, same initial noise "
                                   f"(rows of lr and λ after {iters} iterations)")
    q9.table(srows, "p_target: confidence in the class; rms_from_mean: RMS distance of the pixels to the dataset "
                    "mean (what λ‖I‖² penalises); tv: mean neighbour difference (lower = smoother)")
    q9.text(sweep_text(srows, iters))

    # B-Q10: from a real image
    fr = from_image_study(run, a, s.images, s.labels, s.init_pairs, cfg, generator=fresh())
    rows10 = fr.rows
    q10 = Section("B-Q10", "Starting from a real image (init_img)")
    q10.figure(fr.res.figures["classviz"], "Gradient ascent starting from a real image")
    q10.table(rows10)
    kept = np.mean([r["ssim to start"] for r in rows10])
    early = ""
    if fr.early_iteration is not None:
        early = (f" Already at iteration {fr.early_iteration} the SSIM is "
                 + ", ".join(f"{v:.2f}" for v in fr.early_ssim)
                 + " with target confidence " + ", ".join(f"{v:.2f}" for v in fr.early_p_target) + ".")
    q10.text(f"After {iters} iterations the SSIM to the starting image is "
             + ", ".join(f"{r['ssim to start']:.2f}" for r in rows10) + " and the confidence in the target went "
             + ", ".join(f"{r['p_target start']:.2f} → {r['p_target end']:.2f}" for r in rows10) + "." + early + " "
             + from_image_text(kept)
             + " Towards another class it is a fooling image without a budget on the change.")
    out = [q8, q9, q10]

    # B-Q11: the other network
    if s.b is not None:
        tn = two_networks_study(run, a, s.b, res, s.classes, cfg, names=(s.a_name, s.b_name), generator=fresh())
        q11 = Section("B-Q11", "Class visualisation with another network")
        q11.figure(tn.figures["two_networks"], f"The same classes, same seed, through {s.a_name} (top) and "
                                               f"{s.b_name} (bottom)")
        q11.table(tn.rows)
        q11.text(f"{s.b_name} reaches its own targets with mean confidence {tn.own:.2f}; the images made for "
                 f"{s.a_name} get a mean confidence of {tn.cross:.2f} from {s.b_name}: "
                 + cross_network_text(tn.cross))
        out.append(q11)
    return out


# --------------------------------------------------------------------------- sentences from numbers
P_REACHED = 0.5  # B-Q8/B-Q9: a visualisation reaches its class when the network's confidence is above this
FLAT = 0.05  # B-Q9 trends: a change under 5% of the first value counts as none
RESEMBLES = 0.5  # B-Q8 digits: the images carry the class's shape when at least this share resembles its own class


def classviz_text(hits: int, n: int, mean_conf: float, iters: int, *, own_corr: float | None = None,
                  best: int | None = None) -> str:
    """B-Q8: how many visualisations the network takes for their class and, for digits, whether they
    resemble the class's average test digit."""
    text = (f"{hits} of {n} visualisations are classified as their class (mean confidence {mean_conf:.2f})"
            + (": the ascent finds, for every class, an input the network is sure about. " if hits == n
               else f" after {iters} iterations. "))
    if best is None:
        return text + ("What to look for in the figure: repeated textures and parts of the class spread over the "
                       "whole frame rather than one coherent object, since the network scores local evidence, not a "
                       "layout.")
    return text + (f"Do they look like the class? Each visualisation's correlation with the average test digit of its "
                   f"class is {own_corr:.2f} on average, and the average digit it resembles most is its own class for "
                   f"{best} of {n} classes: "
                   + ("the images carry the class's shape, though as fragments and textures, not as a clean digit"
                      if best >= RESEMBLES * n else
                      "the network is convinced by images that do not look like the class: it responds to local "
                      "evidence, not to the digit as a human sees it")
                   + f" (cut-off: {RESEMBLES:.0%} of the classes).")


def sweep_text(srows: list[dict], iters: int) -> str:
    """B-Q9: what iterations, learning rate and λ change, read from the sweep's rows."""
    it, lr, l2 = ([r for r in srows if r["varied"] == k] for k in ("iterations", "learning_rate", "l2_reg"))
    parts = [f"Iterations ({', '.join(r['setting'] for r in it)}): confidence {_trend(it, 'p_target')}, distance "
             f"from the mean {_trend(it, 'rms_from_mean')}, neighbour difference {_trend(it, 'tv')}: "
             + _direction(it, "rms_from_mean", "the image keeps moving away from the mean, the pattern gets stronger "
                          "with every step", "the image settles closer to the mean", "the image has settled")
             + ("." if it and it[-1]["p_target"] > P_REACHED else ", and the class is not reached yet.")]
    parts.append(f"Learning rate ({', '.join(r['setting'] for r in lr)}): confidence {_trend(lr, 'p_target')}, "
                 f"neighbour difference {_trend(lr, 'tv')}: "
                 + (f"too small a step has not reached the class in {iters} iterations"
                    if lr and lr[0]["p_target"] < P_REACHED else "even the smallest step reaches the class")
                 + _direction(lr, "tv", "; larger steps give harsher, noisier images",
                              "; larger steps give smoother images", "; the step size barely changes the texture")
                 + (f", and the largest overshoots (confidence {lr[-1]['p_target']:.2f})"
                    if lr and lr[-1]["p_target"] < P_REACHED <= max(r["p_target"] for r in lr) else "") + ".")
    parts.append(f"L2 weight ({', '.join(r['setting'] for r in l2)}): distance from the mean "
                 f"{_trend(l2, 'rms_from_mean')}, confidence {_trend(l2, 'p_target')}: "
                 + _direction(l2, "rms_from_mean", "here a larger λ does not shrink the image (the clamp dominates)",
                              "a stronger penalty pulls the image towards the dataset mean and keeps only the "
                              "strongest evidence", "over this range λ hardly changes the image")
                 + (f"; at {l2[-1]['setting']} the penalty wins over the class score (confidence "
                    f"{l2[-1]['p_target']:.2f})" if l2 and l2[-1]["p_target"] < P_REACHED <= max(r["p_target"] for r in l2)
                    else "") + ".")
    return " ".join(parts) + (f" (Cut-offs: a change under {FLAT:.0%} of the first value counts as none; the class is "
                              f"reached at a confidence above {P_REACHED}.)")


def keep_salient_text(keep: dict, n_images: int) -> str:
    """B-Q3: whether the most salient pixels keep the decision better than as many random pixels."""
    parts, clear = [], []
    for f, k in keep.items():
        c = compare_accuracies(k["kept_salient"], k["kept_random"], n_images)
        parts.append(f"{pct(k['kept_salient'], 0)} (random pixels: {pct(k['kept_random'], 0)}) at {f:.0%} kept")
        clear.append(c.sign)
    verdict = ("the map does find the pixels the decision rests on" if any(v > 0 for v in clear) else
               "random pixels keep the decision *better* than the map's" if any(v < 0 for v in clear) else
               "no clear difference from random pixels on these images")
    return (f"Keeping only the most salient pixels preserves the prediction for " + ", ".join(parts) + f": {verdict} "
            f"(95% CI of each difference, {n_images} images).")


SURVIVES = 0.9  # B-Q6: the attack survives 8-bit rounding when at least this share of fooling images still fools


def uint8_text(kept: float) -> str:
    """B-Q6: the share of fooling images that still fool the network once saved as 8-bit pixels."""
    return (f"Saved as 8-bit pixels, {pct(kept, 0)} of the fooling images still fool the network"
            + (": the attack survives an ordinary image file" if kept >= SURVIVES else
               "; the others sat so close to the decision boundary that rounding undid them")
            + f" (cut-off {SURVIVES:.0%}). ")


def fooling_transfer_text(rate: float, clean: float, n_fooled: int, other: str) -> str:
    """B-Q6: the course's fooling images given to another network, against its rate on clean images."""
    c = compare_accuracies(rate, clean, n_fooled)
    head = f"{pct(rate, 0)} of them make {other} predict the same target (clean images: {pct(clean, 0)}): "
    if c.sign <= 0:
        return head + ("no more than the clean images do: the course's attack is tailored to one network's "
                       f"gradients and does not transfer here (threshold {c.threshold}). ")
    return head + ("the attack transfers to a network it never saw" + (", for a minority of the images" if rate < 0.5
                                                                        else "") + f" (threshold {c.threshold}). ")


def attack_transfer_text(fgsm: dict, pgd: dict, other: str, *, eps_255: float, steps: int) -> str:
    """B-Q7: FGSM's and PGD's untargeted images given to another network, both at their whole budget."""
    f_rate, p_rate = fgsm[other], pgd[other]
    c = compare_accuracies(f_rate, p_rate, max(int(fgsm["n_fooled"]), 1), max(int(pgd["n_fooled"]), 1))
    return (f"Transfer (table), both at ε = {eps_255:.0f}/255 and their whole budget (1 step for FGSM, {steps} for "
            f"PGD): {pct(f_rate, 0)} of FGSM's and {pct(p_rate, 0)} of PGD's successful untargeted images also fool "
            f"{other}: " + c.says("the one-step attack transfers better (as Kurakin et al. 2017 report: iterative "
                                  "attacks follow the source network's own gradients more closely)",
                                  "the iterative attack transfers better here",
                                  "no clear difference between them") + f" (threshold {c.threshold}).")


# Fixed cut-offs of the Part B sentences that rest on a correlation, an SSIM or a confidence (no sampling
# model at hand for these): each sentence prints the cut-off it used.
RHO_CLASS_MAP = 0.5  # saliency of the true class vs of another class: above, the map ignores the class
RHO_SANITY = 0.3  # randomised vs trained model's maps: above, the map survives without learnt weights
RHO_TWO_NETWORKS = 0.2  # two networks' maps of the same image: above, broadly the same regions
SSIM_KEPT = 0.5  # class visualisation from a real image: above, much of the image survives
P_CROSS = 0.5  # another network's confidence in a visualisation: above, the features are shared


def class_map_text(rho: float) -> str:
    return (("much of the map is the same whatever the class, i.e. it reflects the input more than the decision"
             if rho > RHO_CLASS_MAP else "the map does depend on the class asked") + f" (cut-off ρ = {RHO_CLASS_MAP}).")


def sanity_text(rho: float) -> str:
    return (("a sizeable part of what a map shows survives without any learnt weight: that part is the image's own "
             "structure, not the model's reasoning" if rho > RHO_SANITY else
             "the maps do depend on the learnt weights, as a faithful explanation must") + f" (cut-off ρ = {RHO_SANITY}).")


def two_networks_maps_text(rho: float) -> str:
    return (("They look at broadly the same regions, but pixel by pixel the maps differ: a saliency map explains one "
             "network, not the image" if rho > RHO_TWO_NETWORKS else
             "Pixel by pixel they hardly agree: a saliency map explains one network, not the image")
            + f" (cut-off ρ = {RHO_TWO_NETWORKS}).")


def from_image_text(ssim: float) -> str:
    return (("Much of the original survives: the ascent paints the class's evidence into a real scene, which shows "
             "what the network would need to see there, in context; with the image's own class it exaggerates the "
             "features the network already relies on (DeepDream-like)" if ssim > SSIM_KEPT else
             "Little of the original structure is left after the course's number of iterations; the earlier "
             "snapshots (figure) keep more of the scene, which is the point of starting from a real image: the "
             "class's features drawn into a real context, or, with the image's own class, exaggerated")
            + f" (mean SSIM {ssim:.2f}, cut-off {SSIM_KEPT}).")


def cross_network_text(p_cross: float) -> str:
    return (("the visualisations carry class features that both networks use, although the two images of a class "
             "differ pixel by pixel (figure)" if p_cross > P_CROSS else
             "much of each image is specific to the network that made it (its own shortcuts), which is why such "
             "images explain a model rather than a class") + f" (cut-off {P_CROSS}).")


# --------------------------------------------------------------------------- entry point
def uses_course_data(ctx) -> bool:
    """Whether this part will run on the course's 25 ImageNet images (checked without loading anything)."""
    from cnnlab.models.registry import weights_cached

    has_model = bool(ctx.arch) or any(weights_cached(a) for a in ("squeezenet1_1", "vgg16"))
    return has_model and bool(ctx.data_root) and (Path(ctx.data_root) / "imagenet_val_25.npz").is_file()


def run_lab(ctx) -> list[Section]:
    s = choose_setup(ctx)
    out = ctx.part_dir("B-explain")
    cfg = {"setting": s.kind, "network_a": s.a_name, "network_b": s.b_name or None, "quick": ctx.quick,
           "dry_run": ctx.dry_run, "eps": s.eps, "eps_l2": s.eps_l2}
    run = Run.create(out, "lab B", cfg, ctx.seed)
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
