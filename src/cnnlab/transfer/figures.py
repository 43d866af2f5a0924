"""Part A figures. Each function returns a matplotlib figure (never shows it)."""

from __future__ import annotations

import math

import matplotlib.ticker
import numpy as np
import torch

from cnnlab.plotting import pyplot

plt = pyplot()


def accuracy_grid(rows: list[dict], selected: tuple[str, float], title: str = "LinearSVC test accuracy"):
    """Heat map layer × C of test accuracy; the CV-selected cell is outlined (chosen without the test set)."""
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    Cs = sorted({r["C"] for r in rows})
    grid = np.full((len(layers), len(Cs)), np.nan)
    for r in rows:
        grid[layers.index(r["layer"]), Cs.index(r["C"])] = r["test_acc"]
    fig, ax = plt.subplots(figsize=(1.1 * len(Cs) + 2.5, 0.55 * len(layers) + 1.6))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(Cs)), [f"{c:g}" for c in Cs])
    ax.set_yticks(range(len(layers)), layers)
    ax.set_xlabel("C")
    for i in range(len(layers)):
        for j in range(len(Cs)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i, j] < np.nanmean(grid) else "black")
    if selected[0] in layers:
        i, j = layers.index(selected[0]), Cs.index(selected[1])
        ax.add_patch(plt.Rectangle((j - .5, i - .5), 1, 1, fill=False, ec="red", lw=2.5))
    ax.set_title(f"{title}\n(red: layer and C chosen by cross-validation on the train split)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return fig


def confusion(cm: np.ndarray, classes: list[str], title: str = "Confusion matrix (test)"):
    n = len(classes)
    fig, ax = plt.subplots(figsize=(0.45 * n + 2.5, 0.45 * n + 2))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    return fig


def training_curves(curves: dict[str, list[dict]], reference: dict[str, float] | None = None,
                    title: str = "Train/test accuracy per epoch"):
    """One line pair (train dashed, test solid) per method; horizontal lines for fixed references."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, hist) in enumerate(curves.items()):
        ep = [h["epoch"] for h in hist]
        c = f"C{i}"
        if any("train_acc" in h for h in hist):
            ax.plot(ep, [h.get("train_acc") for h in hist], "--", color=c, alpha=.7, label=f"{name} (train)")
        ax.plot(ep, [h.get("test_acc") for h in hist], "-o", ms=3, color=c, label=f"{name} (test)")
    for j, (name, v) in enumerate((reference or {}).items()):
        ax.axhline(v, color=f"C{len(curves) + j}", ls=":", lw=2, label=f"{name}: {v:.3f}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=10)
    return fig


def learning_curve(rows: list[dict], title: str = "Test accuracy vs labelled examples per class"):
    fig, ax = plt.subplots(figsize=(6, 4))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, m in enumerate(methods):
        rr = [r for r in rows if r["method"] == m]
        ax.plot([r["per_class"] for r in rr], [r["test_acc"] for r in rr], "-o", color=f"C{i}", label=m)
    ax.set_xscale("log")
    # one plain label per measured size; a log axis's own minor labels (2x10^0, 3x10^0, ...) overlap
    sizes = sorted({r["per_class"] for r in rows})
    ax.set_xticks(sizes, [str(k) for k in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def _show(ax, img: torch.Tensor):
    arr = img.permute(1, 2, 0).numpy()
    ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None)
    ax.axis("off")


def topk_figure(images: torch.Tensor, preds: list[list[tuple[str, float]]], truths: list[str] | None = None):
    """Each image beside a bar chart of its top-k classes (A-Q3); the true class, when known, is green."""
    n = len(images)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    k = max(len(p) for p in preds)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(4.2 * cols, 0.25 * k * rows + 1.6 * rows), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.15] * cols})
    for ax in axes.flat:
        ax.axis("off")
    for i, (img, pr) in enumerate(zip(images, preds)):
        a_img, a_bar = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        _show(a_img, img)
        truth = truths[i].split(",")[0] if truths else None
        if truth is not None:
            a_img.set_title(f"true: {truth[:24]}", fontsize=8)
        names = [name.split(",")[0][:22] for name, _ in pr]
        probs = [p for _, p in pr]
        a_bar.axis("on")
        a_bar.barh(range(len(pr)), probs, color=["C2" if nm == truth else "C0" for nm in names])
        a_bar.set_yticks(range(len(pr)), names, fontsize=7)
        a_bar.invert_yaxis()  # the top prediction on top
        a_bar.set_xlim(0, 1)
        a_bar.tick_params(axis="x", labelsize=6)
        for j, p in enumerate(probs):
            a_bar.text(min(p, 0.62) + 0.02, j, f"{p:.1%}", va="center", fontsize=6)
        for side in ("top", "right"):
            a_bar.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def varied_examples(labels: torch.Tensor, n: int) -> list[int]:
    """Indices of up to ``n`` examples that cover as many classes as possible: the first example of each
    class in turn, then the second of each, and so on (a figure of eight zeros shows little)."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels.tolist()):
        by_class.setdefault(int(y), []).append(i)
    out: list[int] = []
    for rank in range(max(map(len, by_class.values()), default=0)):
        out += [idx[rank] for _, idx in sorted(by_class.items()) if rank < len(idx)]
    return out[:n]


def feature_maps(image: torch.Tensor, maps: torch.Tensor, title: str):
    """The input and a grid of its activation maps (A-Q4)."""
    n = maps.shape[0]
    cols = 8 if n > 16 else 4
    rows = math.ceil(n / cols)
    fig = plt.figure(figsize=(cols * 1.2 + 2.6, rows * 1.2 + .6))
    gs = fig.add_gridspec(rows, cols + 2)
    ax = fig.add_subplot(gs[:min(rows, 2), :2])
    _show(ax, image)
    ax.set_title("input", fontsize=8)
    for i in range(n):
        a = fig.add_subplot(gs[i // cols, 2 + i % cols])
        a.imshow(maps[i].numpy(), cmap="viridis")
        a.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig
