"""Part C figures: functions that return matplotlib figures (never shown)."""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.adapt.grl import LambdaSchedule, LRSchedule
from cnnlab.plotting import pyplot


def domain_samples_figure(source: torch.Tensor, target: torch.Tensor, *, n: int = 12, titles=("source", "target")):
    """Two rows of uint8 images (N×C×H×W): ``n`` evenly spaced images of each domain."""
    plt = pyplot()
    source, target = (x[np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int)] for x in (source, target))
    fig, axes = plt.subplots(2, n, figsize=(n * 0.9, 2.1))
    for row, (imgs, title) in enumerate(zip((source, target), titles)):
        for i in range(n):
            ax = axes[row, i]
            ax.axis("off")
            if i < len(imgs):
                im = imgs[i].permute(1, 2, 0).numpy()
                ax.imshow(im[..., 0] if im.shape[2] == 1 else im, cmap="gray" if im.shape[2] == 1 else None)
    fig.tight_layout(rect=(0, 0, 1, 0.9), h_pad=2.2)
    for row, title in enumerate(titles):  # figure text: a long domain name may run past its row's first image
        box = axes[row, 0].get_position()
        fig.text(box.x0, box.y1 + 0.015, title, fontsize=8, va="bottom")
    return fig


def curves_figure(histories: dict[str, list[dict]], *, keys=("source_test_acc", "target_test_acc", "domain_acc"),
                  titles=None):
    """One panel per metric, one line per run (x = epoch)."""
    plt = pyplot()
    titles = titles or {"source_test_acc": "source test accuracy", "target_test_acc": "target test accuracy",
                        "domain_acc": "domain classifier accuracy (0.5 = confused)",
                        "class_loss": "label loss (train)", "domain_loss": "domain loss (train)"}
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for i, (name, hist) in enumerate(histories.items()):
            pts = [(r["epoch"], r[key]) for r in hist if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=name, color=f"C{i}")  # one colour per run in every panel
        ax.set_title(titles.get(key, key), fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key == "domain_acc":
            ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def schedules_figure(schedules: list[LambdaSchedule], lr: LRSchedule, *, epochs: int = 20):
    """The GRL factor λ(p) of each schedule and the learning rate, per step and per epoch."""
    plt = pyplot()
    p = np.linspace(0, 1, 401)
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.0))
    for s in schedules:
        a.plot(p, [s(x) for x in p], label=s.label)
    a.set_title("GRL factor λ(p)", fontsize=9)
    a.set_xlabel("training progress p")
    a.legend(fontsize=7)
    b.plot(p, [LRSchedule("paper", lr.lr0)(x) for x in p], label="paper (per step)")
    b.step([e / epochs for e in range(epochs + 1)], [LRSchedule("course", lr.lr0)(e / epochs) for e in range(epochs + 1)],
           where="post", label="course (per epoch)")
    b.set_title("learning rate μ0/(1+10p)^0.75", fontsize=9)
    b.set_xlabel("training progress p")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def tsne_figure(embeddings: dict[str, dict]):
    """One panel per model: 2-d t-SNE points, source vs target by colour, digit class by marker text."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(embeddings), figsize=(5.0 * len(embeddings), 4.6), squeeze=False)
    for ax, (name, e) in zip(axes[0], embeddings.items()):
        xy, dom, lab = np.asarray(e["xy"]), np.asarray(e["domain"]), np.asarray(e["labels"])
        for d, colour, label in ((1, "tab:blue", "source"), (0, "tab:red", "target")):
            m = dom == d
            ax.scatter(xy[m, 0], xy[m, 1], s=4, c=colour, alpha=0.45, label=label, linewidths=0)
        for k in np.unique(lab):  # class names at the class centres
            c = xy[lab == k].mean(0)
            ax.text(c[0], c[1], str(k), fontsize=9, weight="bold", ha="center", va="center")
        ax.set_title(f"{name}: domain probe acc {e['domain_probe_acc']:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    return fig


def rounds_figure(rounds: dict[str, list[dict]]):
    """Rounds after training (pseudo-labelling, DIRT-T): target test accuracy and pseudo-label precision."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, rows in rounds.items():
        ax.plot([r["round"] for r in rows], [r["target_test_acc"] for r in rows], marker="o", label=f"{name}: target test acc")
        pts = [(r["round"], r["pseudo_label_acc"]) for r in rows if r.get("pseudo_label_acc") is not None]
        if pts:
            ax.plot(*zip(*pts), ls="--", marker=".", label=f"{name}: pseudo-label precision")
    ax.set_xlabel("round (0: the starting model)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
