"""Class-visualisation studies (``cnnlab explain classviz``, lab B-Q8..B-Q11): gradient ascent to
each class, the sweep of iterations / learning rate / λ, and the lab's measures of the images
(likeness to the class, starting from a real image, another network)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain import figures
from cnnlab.explain.classviz import ClassVisualization, class_visualization, final_scores, sweep
from cnnlab.explain.inputs import class_name, model_input, short_name, normalised_to_pixels
from cnnlab.explain.metrics import image_quality
from cnnlab.explain.saliency import predict_proba
from cnnlab.models import ModelBundle
from cnnlab.runs import Run


def _check_common(blur_every, max_jitter, snapshot_every) -> None:
    if blur_every is not None and blur_every < 0:
        raise CnnlabError(f"--blur-every {blur_every}: must be 0 (never) or more")
    if max_jitter is not None and max_jitter < 0:
        raise CnnlabError(f"--max-jitter {max_jitter}: must be 0 (no jitter) or more")
    if snapshot_every < 1:
        raise CnnlabError(f"--snapshot-every {snapshot_every}: must be at least 1")


@dataclass(frozen=True)
class ClassvizConfig:
    """The course's gradient ascent (defaults: the course's settings)."""

    iterations: int = 200
    learning_rate: float = 5.0
    l2_reg: float = 1e-3  # λ of −λ‖I‖²
    blur_every: int | None = 10  # None: never
    blur_sigma: float = 0.5
    max_jitter: int | None = None  # None: 16 px at 224×224, scaled to the input size
    snapshot_every: int = 25

    def __post_init__(self):
        if self.iterations < 1:
            raise CnnlabError(f"--iterations {self.iterations}: must be at least 1")
        _check_common(self.blur_every, self.max_jitter, self.snapshot_every)


@dataclass(frozen=True)
class ClassvizResult:
    vis: ClassVisualization
    names: list[str]  # the target classes
    scores: list[dict]  # per image: target, score, p_target, pred (indices; classviz.final_scores)
    rows: list[dict]  # the same with class names
    figures: dict[str, Path] = field(default_factory=dict)


def classviz_study(run: Run, bundle: ModelBundle, classes: Sequence[int], cfg: ClassvizConfig, *,
                   init: torch.Tensor | None = None, generator: torch.Generator | None = None, progress: bool = True,
                   table: str | None = "final", history: str | None = "history", figure: str | None = "classviz",
                   row_labels: Sequence[str] | None = None) -> ClassvizResult:
    """One image per class of ``classes``, from noise or from ``init``; the snapshots figure (rows:
    ``row_labels``, default the class names) and the final scores. None: not written."""
    vis = class_visualization(bundle, list(classes), init=init, num_iterations=cfg.iterations, generator=generator,
                              l2_reg=cfg.l2_reg, learning_rate=cfg.learning_rate, blur_every=cfg.blur_every,
                              blur_sigma=cfg.blur_sigma, max_jitter=cfg.max_jitter,
                              snapshot_every=cfg.snapshot_every, progress=progress)
    names = [class_name(bundle, c) for c in classes]
    figs = {}
    if figure:
        snaps = [(it, normalised_to_pixels(bundle, im)) for it, im in vis.snapshots]
        labels = list(row_labels) if row_labels is not None else [short_name(n) for n in names]
        figs["classviz"] = run.save_figure(figures.classviz_figure(snaps, labels), figure)
    scores = final_scores(bundle, vis)
    rows = [dict(r, pred=class_name(bundle, r["pred"]), **{"class": names[i]}) for i, r in enumerate(scores)]
    if table:
        run.write_table(table, rows)
    if history:
        run.write_table(history, vis.history)
    return ClassvizResult(vis, names, scores, rows, figs)


# --------------------------------------------------------------------------- B-Q9: the sweep
@dataclass(frozen=True)
class SweepConfig:
    """One setting varied at a time around the course defaults (see classviz.sweep)."""

    iterations: tuple[int, ...] = (25, 100, 200, 400)  # the iterations row
    num_iterations: int = 200  # the learning-rate and λ rows
    blur_every: int | None = 10
    blur_sigma: float = 0.5
    max_jitter: int | None = None
    snapshot_every: int = 25

    def __post_init__(self):
        object.__setattr__(self, "iterations", tuple(self.iterations))
        if not self.iterations or min(self.iterations) < 1 or self.num_iterations < 1:
            raise CnnlabError(f"sweep iterations {self.iterations} / {self.num_iterations}: each must be at least 1")
        _check_common(self.blur_every, self.max_jitter, self.snapshot_every)


@dataclass(frozen=True)
class SweepResult:
    grid: dict[str, list[tuple[str, torch.Tensor]]]  # varied setting → (label, image)
    rows: list[dict]  # per image: varied, setting, p_target, rms_from_mean, tv
    figures: dict[str, Path]


def tv(p: torch.Tensor) -> float:
    """Mean absolute difference between neighbouring pixels (smoothness), [0,1] units."""
    return float((p[..., 1:, :] - p[..., :-1, :]).abs().mean() + (p[..., :, 1:] - p[..., :, :-1]).abs().mean()) / 2


def sweep_study(run: Run, bundle: ModelBundle, target: int, cfg: SweepConfig, *,
                generator: torch.Generator | None = None, progress: bool = True, figure: str = "sweep",
                table: str | None = None) -> SweepResult:
    sw = sweep(bundle, target, iterations=cfg.iterations, num_iterations=cfg.num_iterations, generator=generator,
               max_jitter=cfg.max_jitter, blur_every=cfg.blur_every, blur_sigma=cfg.blur_sigma,
               snapshot_every=cfg.snapshot_every, progress=progress)
    grid = {k: [(lab, normalised_to_pixels(bundle, im[None])[0]) for lab, im in v] for k, v in sw["grid"].items()}
    figs = {"sweep": run.save_figure(figures.sweep_figure(grid, suptitle=class_name(bundle, target)), figure)}
    rows = []
    mean = torch.tensor(bundle.mean).view(-1, 1, 1)
    for kind, cells in sw["grid"].items():
        for lab, im in cells:
            p = predict_proba(bundle, im[None])[0, target]
            px = normalised_to_pixels(bundle, im[None])[0].clamp(0, 1)
            rows.append({"varied": kind, "setting": lab, "p_target": float(p),
                         "rms_from_mean": float((px - mean).pow(2).mean().sqrt()), "tv": tv(px)})
    if table:
        run.write_table(table, rows)
    return SweepResult(sw["grid"], rows, figs)


# --------------------------------------------------------------------------- the lab's measures
@dataclass(frozen=True)
class ClassLikeness:
    written: list[dict]  # per class: score, confidence, prediction (the table as written)
    rows: list[dict]  # the same, with the correlation to the class's mean image when measured
    hits: int  # visualisations classified as their class
    own_corr: list[float]  # correlation of each visualisation with its class's mean image
    best: int | None  # visualisations most like their own class's mean image


def class_likeness(run: Run, bundle: ModelBundle, res: ClassvizResult, classes: Sequence[int], *,
                   images: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                   table: str = "classviz") -> ClassLikeness:
    """B-Q8: are the visualisations classified as their class; with ``images`` (digits, labels
    0..9), do they look like the average image of their class?"""
    rows = [{"class": res.names[i], "score": r["score"], "p_target": r["p_target"],
             "predicted": class_name(bundle, r["pred"])} for i, r in enumerate(res.scores)]
    run.write_table(table, rows)
    hits = sum(r["predicted"] == r["class"] for r in rows)
    own, best, out = [], None, rows
    if images is not None:
        mean_img = torch.stack([normalised_to_pixels(bundle, model_input(bundle, images[labels == c])).cpu().mean(0)
                                for c in range(10)]).flatten(1)
        vis_px = normalised_to_pixels(bundle, res.vis.images).clamp(0, 1).flatten(1)
        corr = torch.corrcoef(torch.cat([vis_px, mean_img]))[:len(vis_px), len(vis_px):]  # vis × class means
        own = [float(corr[i, c]) for i, c in enumerate(classes)]
        best = sum(int(corr[i].argmax()) == c for i, c in enumerate(classes))
        out = [dict(r, corr_with_class_mean=o) for r, o in zip(rows, own)]
    return ClassLikeness(rows, out, hits, own, best)


@dataclass(frozen=True)
class FromImageResult:
    res: ClassvizResult
    rows: list[dict]  # per pair: start and end confidence, SSIM and PSNR to the start
    early_iteration: int | None  # the first snapshot after iteration 1, if before the last
    early_ssim: list[float]
    early_p_target: list[float]


def from_image_study(run: Run, bundle: ModelBundle, images: torch.Tensor, labels: torch.Tensor,
                     pairs: Sequence[tuple[int, int]], cfg: ClassvizConfig, *,
                     generator: torch.Generator | None = None) -> FromImageResult:
    """B-Q10: gradient ascent from real images (``pairs``: image index, target class)."""
    init = images[[i for i, _ in pairs]]
    row_labels = [f"{short_name(class_name(bundle, int(labels[i])))}→{short_name(class_name(bundle, t))}"
                  for i, t in pairs]
    res = classviz_study(run, bundle, [t for _, t in pairs], cfg, init=init, generator=generator, progress=False,
                         table=None, history=None, figure="B-Q10_from_image", row_labels=row_labels)
    vis = res.vis
    p0 = predict_proba(bundle, init)
    start_px = normalised_to_pixels(bundle, model_input(bundle, init)).cpu()
    rows = []
    for j, (i, t) in enumerate(pairs):
        q = image_quality(start_px[j], normalised_to_pixels(bundle, vis.images[j:j + 1])[0].clamp(0, 1))
        rows.append({"image": i, "label": class_name(bundle, int(labels[i])), "target": class_name(bundle, t),
                     "p_target start": float(p0[j, t]), "p_target end": res.scores[j]["p_target"],
                     "ssim to start": q["ssim"], "psnr to start": q["psnr"]})
    run.write_table("classviz_from_image", rows)
    early_it = min((it for it, _ in vis.snapshots if it > 1), default=None)
    if early_it is None or early_it >= cfg.iterations:
        return FromImageResult(res, rows, None, [], [])
    im_e = normalised_to_pixels(bundle, vis.at(early_it)).clamp(0, 1)
    ss_e = [image_quality(start_px[j], im_e[j])["ssim"] for j in range(len(rows))]
    p_e = [h["p_target"] for h in vis.history if h["iteration"] == early_it]
    return FromImageResult(res, rows, early_it, ss_e, p_e)


@dataclass(frozen=True)
class TwoNetworks:
    rows: list[dict]  # per class: B's confidence in its own image, each network on the other's image
    own: float  # mean confidence of B in its own visualisations
    cross: float  # mean confidence of B in A's visualisations
    figures: dict[str, Path]


def two_networks_study(run: Run, a: ModelBundle, b: ModelBundle, res_a: ClassvizResult, classes: Sequence[int],
                       cfg: ClassvizConfig, *, names: tuple[str, str],
                       generator: torch.Generator | None = None) -> TwoNetworks:
    """B-Q11: the same classes through network ``b``; each network judges the other's images."""
    a_name, b_name = names
    res_b = classviz_study(run, b, classes, cfg, generator=generator, progress=False, table=None, history=None,
                           figure=None)
    cross_ab = predict_proba(b, res_a.vis.images)  # A's visualisations judged by B
    cross_ba = predict_proba(a, res_b.vis.images)
    rows = [{"class": res_a.names[i], f"p {b_name} (own)": res_b.scores[i]["p_target"],
             f"p {a_name} on {b_name}'s image": float(cross_ba[i, c]),
             f"p {b_name} on {a_name}'s image": float(cross_ab[i, c])} for i, c in enumerate(classes)]
    run.write_table("classviz_other_network", rows)
    fig = figures.image_rows_figure({a_name: normalised_to_pixels(a, res_a.vis.images), b_name: normalised_to_pixels(b, res_b.vis.images)},
                                    {a_name: [short_name(n) for n in res_a.names]})
    figs = {"two_networks": run.save_figure(fig, "B-Q11_two_networks")}
    own = float(np.mean([r[f"p {b_name} (own)"] for r in rows]))
    cross = float(np.mean([r[f"p {b_name} on {a_name}'s image"] for r in rows]))
    return TwoNetworks(rows, own, cross, figs)
