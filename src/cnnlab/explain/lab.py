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
from cnnlab.explain.lab_text import (attack_transfer_text, class_map_text, classviz_text, cross_network_text,
                                      fooling_transfer_text, from_image_text, keep_salient_text, sanity_text,
                                      sweep_text, two_networks_maps_text, uint8_text)
from cnnlab.explain.study import (COURSE_LABELS, AttackConfig, ClassvizConfig, FoolingConfig, SaliencyConfig,
                                  SweepConfig, attack_study, class_likeness, classviz_study, course_attacks,
                                  fooling_study, from_image_study, random_pair_targets, saliency_measures,
                                  saliency_study, sweep_study, two_networks_study)
from cnnlab.report import Section, pct
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
