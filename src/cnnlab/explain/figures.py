"""Figures of Part B. Each function returns a matplotlib figure (never shows it).

Images are passed as [0,1] pixels (N,C,H,W) (see :func:`cnnlab.explain.inputs.to_pixels`); maps
as (N,H,W). Titles are plain strings.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _img(ax, p: torch.Tensor, title: str = "") -> None:
    a = p.detach().clamp(0, 1).cpu().numpy()
    if a.shape[0] == 1:
        ax.imshow(a[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(a.transpose(1, 2, 0))
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _grid(rows: int, cols: int, size: float = 1.9):
    # no ticks and a fixed layout: image grids of 50 panels otherwise spend seconds in tick/tight layout
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + 0.3), squeeze=False,
                             subplot_kw={"xticks": [], "yticks": []})
    return fig, axes


def _pack(fig, title_lines: int = 2) -> None:
    h = fig.get_size_inches()[1]
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / h, wspace=0.06,
                        hspace=0.12 * title_lines + 0.05)


def maps_figure(pixels: torch.Tensor, maps: Mapping[str, torch.Tensor], titles: Sequence[str] = (), *,
                overlay: Sequence[str] = (), suptitle: str = "") -> plt.Figure:
    """First row the images, then one row per map kind (saliency, SmoothGrad, another network …).
    Kinds in ``overlay`` (Grad-CAM) are drawn over the image; others as the course's ``hot`` maps."""
    n = len(pixels)
    fig, axes = _grid(1 + len(maps), n)
    for j in range(n):
        _img(axes[0, j], pixels[j], titles[j] if j < len(titles) else "")
    for i, (label, m) in enumerate(maps.items(), start=1):
        for j in range(n):
            ax = axes[i, j]
            if label in overlay:
                _img(ax, pixels[j])
                ax.imshow(m[j].numpy(), cmap="jet", alpha=0.45)
            else:
                ax.imshow(m[j].numpy(), cmap="hot")
                ax.axis("off")
            if j == 0:
                ax.set_title(label, fontsize=8, loc="left")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    _pack(fig)
    return fig


def fooling_figure(original: torch.Tensor, fooled: torch.Tensor, titles: Sequence[tuple[str, str]]) -> plt.Figure:
    """The course's B-Q5 figure, one row per pair: original, fooling image, difference, difference ×10
    (differences drawn around mid-grey: grey = unchanged)."""
    n = len(original)
    fig, axes = _grid(n, 4, size=2.2)
    for i in range(n):
        d = fooled[i] - original[i]
        a, b = titles[i] if i < len(titles) else ("", "")
        _img(axes[i, 0], original[i], a)
        _img(axes[i, 1], fooled[i], b)
        _img(axes[i, 2], 0.5 + d, f"difference (max {d.abs().max() * 255:.1f}/255)")
        _img(axes[i, 3], 0.5 + 10 * d, "difference ×10")
    _pack(fig)
    return fig


def image_rows_figure(rows: Mapping[str, torch.Tensor], titles: Mapping[str, Sequence[str]] | None = None,
                      *, suptitle: str = "") -> plt.Figure:
    """One row of images per entry (e.g. an attack's adversarial images), optional per-image titles."""
    n = max(len(v) for v in rows.values())
    fig, axes = _grid(len(rows), n)
    for i, (label, imgs) in enumerate(rows.items()):
        for j in range(n):
            if j < len(imgs):
                t = (titles or {}).get(label, [])
                _img(axes[i, j], imgs[j], t[j] if j < len(t) else "")
            else:
                axes[i, j].axis("off")
        axes[i, 0].set_title((label + "\n" + axes[i, 0].get_title()).strip(), fontsize=8, loc="left")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    _pack(fig)
    return fig


def classviz_figure(snapshots: Sequence[tuple[int, torch.Tensor]], class_names: Sequence[str]) -> plt.Figure:
    """Rows: classes; columns: the snapshots (iteration numbers on top)."""
    rows, cols = len(class_names), len(snapshots)
    fig, axes = _grid(rows, cols, size=1.6)
    for j, (it, imgs) in enumerate(snapshots):
        for i in range(rows):
            _img(axes[i, j], imgs[i], f"it {it}" if i == 0 else "")
            if j == 0:
                axes[i, j].set_title((class_names[i] + (f"\nit {it}" if i == 0 else "")), fontsize=8, loc="left")
    _pack(fig)
    return fig


def sweep_figure(grid: Mapping[str, Sequence[tuple[str, torch.Tensor]]], *, suptitle: str = "") -> plt.Figure:
    """B-Q9: one row per varied setting (iterations, learning rate, L2 weight)."""
    cols = max(len(v) for v in grid.values())
    fig, axes = _grid(len(grid), cols, size=2.0)
    for i, (kind, cells) in enumerate(grid.items()):
        for j in range(cols):
            if j < len(cells):
                _img(axes[i, j], cells[j][1], cells[j][0])
            else:
                axes[i, j].axis("off")
        axes[i, 0].set_ylabel(kind)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    _pack(fig)
    return fig


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
