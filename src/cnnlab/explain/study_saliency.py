"""Saliency studies: maps of one or more methods, the model-randomisation sanity check and a second
network on the same images (``cnnlab explain saliency``, lab B-Q2), then the lab's own measures of
the maps (B-Q1, B-Q3, B-Q4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain import figures
from cnnlab.explain.inputs import class_name, model_input, short_name, normalised_to_pixels
from cnnlab.explain.metrics import keep_salient, top_share
from cnnlab.explain.saliency import METHODS, grad_cam, gradcam_layer, predict_proba, saliency_maps, smoothgrad
from cnnlab.explain.sanity import SanityResult, model_randomization_check, spearman
from cnnlab.models import ModelBundle
from cnnlab.runs import Run

# each method's name in figures and table columns; "{layer}" is Grad-CAM's layer
COMMAND_LABELS = {"saliency": "saliency", "smoothgrad": "smoothgrad", "gradcam": "grad-cam {layer}"}
COURSE_LABELS = {"saliency": "saliency", "smoothgrad": "SmoothGrad", "gradcam": "Grad-CAM ({layer})"}


@dataclass(frozen=True)
class SaliencyConfig:
    methods: tuple[str, ...] = ("saliency",)  # of saliency, smoothgrad, gradcam
    samples: int = 25  # SmoothGrad: noisy copies per image
    noise: float = 0.15  # SmoothGrad: σ as a fraction of each image's range
    layer: str | None = None  # Grad-CAM's module or alias; None: the family default
    sanity: bool = False  # model-randomisation check on the images of the figures
    sanity_steps: int = 5
    show: int = 10  # images in the figures
    labels: Mapping[str, str] = field(default_factory=lambda: dict(COMMAND_LABELS))

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise CnnlabError(f"--method {','.join(bad) or '(none)'}: choose saliency, smoothgrad, gradcam or all")
        if "smoothgrad" in self.methods and self.samples < 1:
            raise CnnlabError(f"--samples {self.samples}: SmoothGrad needs at least 1 noisy sample (default 25)")
        if self.sanity and self.sanity_steps < 1:
            raise CnnlabError(f"sanity check steps {self.sanity_steps}: must be at least 1 (default 5)")
        if self.show < 1:
            raise CnnlabError(f"images shown {self.show}: must be at least 1")


@dataclass(frozen=True)
class SaliencyResult:
    probs: torch.Tensor  # (N, K) softmax of the network
    pred: torch.Tensor  # (N,)
    targets: torch.Tensor  # (N,) the class each map explains
    label_names: list[str]  # true class ("?" when unknown)
    pred_names: list[str]
    titles: list[str]  # figure titles: true class and prediction
    pixels: torch.Tensor  # (N,C,H,W) [0,1] images as the network sees them
    layer: str | None  # Grad-CAM's layer
    maps: dict[str, torch.Tensor]  # method (and "second") → (N, H, W)
    labels: dict[str, str]  # method (and "second") → its name in figures and columns
    rows: list[dict]  # per image: prediction, top-5% share of each map, Spearman to the first map
    second_pred: torch.Tensor | None
    sanity: SanityResult | None
    figures: dict[str, Path]


def saliency_study(run: Run, bundle: ModelBundle, images: torch.Tensor, cfg: SaliencyConfig, *,
                   targets: int | torch.Tensor | None = None, labels: torch.Tensor | None = None,
                   ids: Sequence | None = None, second: ModelBundle | None = None, second_label: str | None = None,
                   generator: torch.Generator | None = None, table: str | None = "per_image",
                   figure: str = "saliency", sanity_prefix: str = "", second_in_figure: bool = True) -> SaliencyResult:
    """Maps of ``cfg.methods`` for ``targets`` (a class for all, one per image, or None: each image's
    prediction), and of the same classes through ``second``; ``table`` None: the per-image table is
    not written. ``generator`` draws SmoothGrad's noise, then the sanity check's re-initialisations."""
    g = generator or torch.Generator().manual_seed(0)
    n = len(images)
    labels = torch.full((n,), -1, dtype=torch.long) if labels is None else labels
    ids = [str(i) for i in range(n)] if ids is None else list(ids)
    probs = predict_proba(bundle, images)
    pred = probs.argmax(1)
    if targets is None:
        targets = pred
    elif isinstance(targets, int):
        targets = torch.full_like(pred, targets)
    layer = gradcam_layer(bundle, cfg.layer) if "gradcam" in cfg.methods else None
    names = {m: cfg.labels[m].format(layer=layer) for m in cfg.methods}
    maps: dict[str, torch.Tensor] = {}
    if "saliency" in cfg.methods:
        maps["saliency"] = saliency_maps(bundle, images, targets)
    if "smoothgrad" in cfg.methods:
        maps["smoothgrad"] = smoothgrad(bundle, images, targets, samples=cfg.samples, noise=cfg.noise, generator=g)
    if "gradcam" in cfg.methods:
        maps["gradcam"] = grad_cam(bundle, images, targets, layer=layer)
    second_pred = None
    if second is not None:  # the same images and classes through another network
        maps["second"] = saliency_maps(second, images, targets)
        second_pred = predict_proba(second, images).argmax(1)
        names["second"] = second_label or f"saliency ({second.arch} {second.weights_id[:12]})"

    label_names = [class_name(bundle, int(y)) if int(y) >= 0 else "?" for y in labels]
    pred_names = [class_name(bundle, int(p)) for p in pred]
    first = next(iter(maps))
    rows = []
    for i in range(n):
        row = {"image": ids[i], "label": label_names[i], "pred": pred_names[i], "p_pred": float(probs[i, pred[i]]),
               "target": int(targets[i])}
        for k, m in maps.items():
            row[f"top5%_share {names[k]}"] = top_share(m[i], 0.05)
            if k != first:  # rank agreement with the first method's map
                row[f"spearman {names[first]} vs {names[k]}"] = spearman(maps[first][i], m[i])
        rows.append(row)
    if table:
        run.write_table(table, rows)

    pix = normalised_to_pixels(bundle, model_input(bundle, images)).cpu()
    titles = [f"{short_name(label_names[i])}\npred {short_name(pred_names[i])}" for i in range(n)]
    show = slice(0, min(n, cfg.show))
    shown = {names[k]: v[show] for k, v in maps.items() if k != "second" or second_in_figure}
    overlay = [names["gradcam"]] if "gradcam" in maps else []
    figs = {"maps": run.save_figure(figures.maps_figure(pix[show], shown, titles[show], overlay=overlay), figure)}
    sanity = None
    if cfg.sanity:
        sanity = model_randomization_check(bundle, images[show], targets[show], steps=cfg.sanity_steps, generator=g)
        run.write_table("sanity_check", sanity.rows)
        figs["sanity_maps"] = run.save_figure(figures.maps_figure(pix[show], sanity.maps, titles[show]),
                                              f"{sanity_prefix}sanity_maps")
        figs["sanity_curve"] = run.save_figure(figures.sanity_curve(sanity.rows), f"{sanity_prefix}sanity_curve")
    return SaliencyResult(probs, pred, targets, label_names, pred_names, titles, pix, layer, maps, names, rows,
                          second_pred, sanity, figs)


def mean_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean Spearman rank correlation of two stacks of maps, image by image."""
    return float(np.nanmean([spearman(x, y) for x, y in zip(a, b)]))


# --------------------------------------------------------------------------- the lab's measures (B-Q1..B-Q4)
@dataclass(frozen=True)
class SaliencyMeasures:
    rows: list[dict]  # B-Q1: per image, where the saliency map's mass lies
    rho_other: float  # mean Spearman: saliency of the true class vs of another class
    rho_smoothgrad: float  # saliency vs SmoothGrad
    rho_gradcam: float  # saliency vs Grad-CAM
    keep: dict[float, dict[str, float]]  # B-Q3: fraction of pixels kept → prediction unchanged (salient, random)
    second_rows: list[dict]  # B-Q4: per image, both networks (empty without a second network)
    rho_second: float  # mean Spearman between the two networks' maps (nan without one)
    figures: dict[str, Path]


def saliency_measures(run: Run, bundle: ModelBundle, images: torch.Tensor, labels: torch.Tensor,
                      res: SaliencyResult, *, ids: Sequence[int], digits: bool, names: tuple[str, str],
                      second: ModelBundle | None = None, generator: torch.Generator | None = None,
                      fractions: Sequence[float] = (0.2, 0.5)) -> SaliencyMeasures:
    """What the lab reads from ``res`` (true-class maps of ``saliency_study``): where the mass lies
    (the strokes of a digit, the centre of a photograph), class-discriminativeness, agreement
    between methods, masking to the salient pixels, and the second network's maps (``names``:
    the two networks)."""
    g = generator or torch.Generator().manual_seed(0)
    sal, pix = res.maps["saliency"], res.pixels
    rows = []
    for i in range(len(ids)):
        r = {"image": ids[i], "label": res.label_names[i], "pred": res.pred_names[i],
             "p_pred": float(res.probs[i, res.pred[i]]), "top5%_share": top_share(sal[i])}
        if digits:
            stroke = (pix[i, 0] > 0.5)
            r["stroke_pixels"] = float(stroke.float().mean())
            r["stroke_share"] = float(sal[i][stroke].sum() / sal[i].sum())
        else:
            h, w = sal[i].shape
            centre = sal[i][h // 4:3 * h // 4, w // 4:3 * w // 4]
            r["centre_share"] = float(centre.sum() / sal[i].sum())  # central quarter of the area
        rows.append(r)
    run.write_table("saliency_per_image", rows)
    figs = {"saliency": run.save_figure(figures.maps_figure(pix, {"saliency": sal}, res.titles), "B-Q1_saliency")}
    other = (labels + 1) % (len(bundle.categories or []) or 10)
    rho_other = mean_spearman(sal, saliency_maps(bundle, images, other))
    keep = {f: keep_salient(bundle, images, sal, fraction=f, generator=g) for f in fractions}
    second_rows, rho_second = [], float("nan")
    if second is not None:
        sal_b, a_name, b_name = res.maps["second"], names[0], names[1]
        rho_ab = [spearman(x, y) for x, y in zip(sal, sal_b)]
        figs["second"] = run.save_figure(figures.maps_figure(pix, {a_name: sal, b_name: sal_b}, res.titles),
                                         "B-Q4_two_networks")
        second_rows = [{"image": ids[i], "label": res.label_names[i], f"pred {a_name}": res.pred_names[i],
                        f"pred {b_name}": class_name(second, int(res.second_pred[i])), "spearman A vs B": rho_ab[i],
                        "top5% A": top_share(sal[i]), "top5% B": top_share(sal_b[i])} for i in range(len(ids))]
        rho_second = float(np.nanmean(rho_ab))
    return SaliencyMeasures(rows, rho_other, mean_spearman(sal, res.maps["smoothgrad"]),
                            mean_spearman(sal, res.maps["gradcam"]), keep, second_rows, rho_second, figs)
