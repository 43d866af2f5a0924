"""Figures of Part B. Each function returns a matplotlib figure (never shows it).

Images are passed as [0,1] pixels (N,C,H,W) (see :func:`cnnlab.explain.inputs.normalised_to_pixels`); maps
as (N,H,W). Titles are plain strings.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from cnnlab.plotting import pyplot

plt = pyplot()


# --------------------------------------------------------------------------- mosaics
# Image grids are drawn as ONE picture (panels pasted into a canvas) in one axes, with titles as text:
# a 50-panel grid of separate axes costs seconds of tick and layout work, a mosaic a fraction of that.
Cell = tuple  # (H×W×3 float array in [0,1] or None, title)


def _rgb(p: torch.Tensor) -> np.ndarray:
    """[0,1] pixels C×H×W → H×W×3 (grey replicated)."""
    a = p.detach().float().clamp(0, 1).cpu().numpy()
    return np.repeat(a, 3, axis=0).transpose(1, 2, 0) if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _heat(m: torch.Tensor, cmap: str = "hot") -> np.ndarray:
    """A map H×W → colours, scaled to its own maximum (as imshow does per panel)."""
    a = m.detach().float().cpu().numpy()
    lo, hi = float(a.min()), float(a.max())
    return plt.get_cmap(cmap)((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a))[..., :3]


def _overlay(p: torch.Tensor, m: torch.Tensor, alpha: float = 0.45) -> np.ndarray:
    return (1 - alpha) * _rgb(p) + alpha * _heat(m, "jet")


def _mosaic(cells: Sequence[Sequence[Cell]], *, row_labels: Sequence[str] = (), suptitle: str = "",
            inches: float = 1.9) -> plt.Figure:
    """Rows of (image, title) cells in one canvas; ``row_labels`` go above each row's first cell."""
    cols = max(len(r) for r in cells)
    h = max(c[0].shape[0] for r in cells for c in r if c[0] is not None)
    w = max(c[0].shape[1] for r in cells for c in r if c[0] is not None)
    line = max(3, int(round(h * 0.13)))  # one line of 8-pt text, in canvas pixels
    gap = max(1, w // 20)
    bands = []  # per row: room for the row label and the titles above it
    for i, r in enumerate(cells):
        n = max([str(t).count("\n") + 1 for _, t in r if t] or [0])
        bands.append(line * (n + (1 if i < len(row_labels) and row_labels[i] else 0)) + gap)
    tops = np.cumsum([0] + [b + h for b in bands])  # canvas row where each band starts
    canvas = np.ones((int(tops[-1]), cols * (w + gap) - gap, 3))
    for i, r in enumerate(cells):
        for j, (img, _) in enumerate(r):
            if img is not None:
                y, x = tops[i] + bands[i], j * (w + gap)
                canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    extra = 0.3 if suptitle else 0.0
    fig = plt.figure(figsize=(inches * cols, inches * canvas.shape[0] / w + extra))
    ax = fig.add_axes((0, 0, 1, 1 - extra / fig.get_size_inches()[1]))
    ax.imshow(canvas.clip(0, 1), interpolation="nearest")
    ax.set_axis_off()
    for i, r in enumerate(cells):
        for j, (_, title) in enumerate(r):
            if title:
                ax.text(j * (w + gap) + w / 2, tops[i] + bands[i] - 1, title, ha="center", va="bottom", fontsize=8)
        if i < len(row_labels) and row_labels[i]:
            ax.text(0, tops[i] + 1, row_labels[i], ha="left", va="top", fontsize=8, fontweight="bold")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


# --------------------------------------------------------------------------- the figures
def maps_figure(pixels: torch.Tensor, maps: Mapping[str, torch.Tensor], titles: Sequence[str] = (), *,
                overlay: Sequence[str] = (), suptitle: str = "") -> plt.Figure:
    """First row the images, then one row per map kind (saliency, SmoothGrad, another network …).
    Kinds in ``overlay`` (Grad-CAM) are drawn over the image; others as the course's ``hot`` maps."""
    n = len(pixels)
    cells = [[(_rgb(pixels[j]), titles[j] if j < len(titles) else "") for j in range(n)]]
    for label, m in maps.items():
        cells.append([(_overlay(pixels[j], m[j]) if label in overlay else _heat(m[j]), "") for j in range(n)])
    return _mosaic(cells, row_labels=["", *maps], suptitle=suptitle)


def fooling_figure(original: torch.Tensor, fooled: torch.Tensor, titles: Sequence[tuple[str, str]]) -> plt.Figure:
    """The course's B-Q5 figure, one row per pair: original, fooling image, difference, difference ×10
    (differences drawn around mid-grey: grey = unchanged)."""
    cells = []
    for i in range(len(original)):
        d = fooled[i] - original[i]
        a, b = titles[i] if i < len(titles) else ("", "")
        cells.append([(_rgb(original[i]), a), (_rgb(fooled[i]), b),
                      (_rgb(0.5 + d), f"difference (max {float(d.abs().max()) * 255:.1f}/255)"),
                      (_rgb(0.5 + 10 * d), "difference ×10")])
    return _mosaic(cells, inches=2.2)


def image_rows_figure(rows: Mapping[str, torch.Tensor], titles: Mapping[str, Sequence[str]] | None = None,
                      *, suptitle: str = "") -> plt.Figure:
    """One row of images per entry (e.g. an attack's adversarial images), optional per-image titles."""
    cells = []
    for label, imgs in rows.items():
        t = (titles or {}).get(label, [])
        cells.append([(_rgb(imgs[j]), t[j] if j < len(t) else "") for j in range(len(imgs))])
    return _mosaic(cells, row_labels=list(rows), suptitle=suptitle)


def attack_titles(rows: Sequence[dict], n: int) -> tuple[list[str], list[str]]:
    """Titles for an adversarial-examples figure from ``metrics.attack_table`` rows: the true class of
    each original, and what the network predicts on each attacked image ("(failed)" where the attack
    did not reach its goal)."""
    from cnnlab.explain.inputs import short_name

    originals = [short_name(r["label"], 14) for r in rows[:n]]
    attacked = [short_name(r["pred"], 14) + ("" if r["success"] else " (failed)") for r in rows[:n]]
    return originals, attacked


def classviz_figure(snapshots: Sequence[tuple[int, torch.Tensor]], class_names: Sequence[str]) -> plt.Figure:
    """Rows: classes; columns: the snapshots (iteration numbers above the first row)."""
    cells = [[(_rgb(imgs[i]), f"it {it}" if i == 0 else "") for it, imgs in snapshots] for i in range(len(class_names))]
    return _mosaic(cells, row_labels=list(class_names), inches=1.6)


def sweep_figure(grid: Mapping[str, Sequence[tuple[str, torch.Tensor]]], *, suptitle: str = "") -> plt.Figure:
    """B-Q9: one row per varied setting (iterations, learning rate, L2 weight)."""
    cells = [[(_rgb(img), label) for label, img in row] for row in grid.values()]
    return _mosaic(cells, row_labels=list(grid), suptitle=suptitle, inches=2.0)


def sanity_curve(rows: Sequence[dict], *, label: str = "saliency") -> plt.Figure:
    """Spearman correlation with the trained model's maps as layers are randomised from the top."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    k = [r["layers"] for r in rows]
    ax.plot(k, [r["spearman_mean"] for r in rows], "o-", label=f"{label}: Spearman (mean)")
    ax.plot(k, [r["ssim_mean"] for r in rows], "s--", label=f"{label}: SSIM (mean)")
    ax.set_xlabel("layers randomised (from the logits down)")
    ax.set_ylabel("similarity to the trained model's map")
    ax.set_ylim(-0.1, 1.05)
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def success_curve(runs: Mapping[str, tuple[np.ndarray, np.ndarray]], cap: int) -> plt.Figure:
    """Fraction of images fooled within n iterations; ``runs``: name → (iterations, success)."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    xs = np.arange(0, cap + 1)
    for name, (its, ok) in runs.items():
        its, ok = np.asarray(its, dtype=float), np.asarray(ok, dtype=bool)
        ax.step(xs, [((its <= x) & ok).mean() for x in xs], where="post", label=name)
    ax.set_xlabel("iterations")
    ax.set_ylabel("fraction fooled")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
