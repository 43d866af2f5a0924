"""Figures of Part D: functions that return matplotlib figures (never ``show()``), plus the PNG/GIF
writers for the fixed-noise grids saved every N steps (written with PIL: no figure per step)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from cnnlab.plotting import pyplot
from cnnlab.runs import atomic_write_bytes


def gan_range_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [−1, 1] (or uint8) → uint8 B×C×H×W (the inverse of ``train.to_gan_range``)."""
    if images.dtype == torch.uint8:
        return images
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid_array(images: torch.Tensor, nrow: int, pad: int = 2) -> np.ndarray:
    """uint8 H×W×3 mosaic with ``nrow`` images per row."""
    from torchvision.utils import make_grid

    x = gan_range_to_uint8(images)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    g = make_grid(x, nrow=nrow, padding=pad, pad_value=255)  # 3×H×W uint8
    return g.permute(1, 2, 0).numpy()


def write_grid_png(path: str | Path, images: torch.Tensor, nrow: int) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(grid_array(images, nrow)).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


def write_gif(path: str | Path, frames: list[np.ndarray], ms_per_frame: int = 250) -> Path:
    """An animated GIF of the fixed-noise grids (the training's progress)."""
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=ms_per_frame, loop=0)
    return atomic_write_bytes(path, buf.getvalue())


def samples_figure(images: torch.Tensor, *, nrow: int = 8, title: str = ""):
    plt = pyplot()
    arr = grid_array(images, nrow)
    fig, ax = plt.subplots(figsize=(arr.shape[1] / 60, arr.shape[0] / 60 + 0.3))
    ax.imshow(arr)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def progress_strip_figure(snapshots: list[tuple[int, torch.Tensor]], *, per_row: int = 8, max_rows: int = 10):
    """Rows = fixed-noise samples at successive steps (evenly chosen), the same z in each column."""
    plt = pyplot()
    if len(snapshots) > max_rows:
        keep = np.unique(np.linspace(0, len(snapshots) - 1, max_rows).round().astype(int))
        snapshots = [snapshots[i] for i in keep]
    fig, axes = plt.subplots(len(snapshots), 1, figsize=(per_row * 0.55 + 0.9, len(snapshots) * 0.62 + 0.3),
                             squeeze=False)
    for ax, (step, imgs) in zip(axes[:, 0], snapshots):
        ax.imshow(grid_array(imgs[:per_row], per_row, pad=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"step {step}", rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle("fixed noise over training", fontsize=9)
    fig.tight_layout()
    return fig


def _smooth(v: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(v) < k:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def curves_figure(step_rows: list[dict], *, title: str = ""):
    """Left: D and G losses per step; right: mean D(x) and mean D(G(z)) per step (raw + moving average)."""
    plt = pyplot()
    steps = np.array([r["step"] for r in step_rows])
    k = max(1, len(steps) // 50)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, keys in ((a, ("loss_D", "loss_G")), (b, ("D_x", "D_G_z"))):
        for key, color in zip(keys, ("tab:blue", "tab:orange")):
            v = np.array([r.get(key, np.nan) for r in step_rows], dtype=float)
            ax.plot(steps, v, color=color, alpha=0.25, lw=0.8)
            ax.plot(steps, _smooth(v, k), color=color, lw=1.5, label=key.replace("D_G_z", "D(G(z))").replace("D_x", "D(x)"))
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    a.set_title("losses", fontsize=9)
    b.set_title("mean discriminator outputs", fontsize=9)
    b.set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def conditional_grid_figure(images: torch.Tensor, *, n_z: int, classes: list[str], title: str = ""):
    """The course's final test: one row per class, one column per noise vector z.
    ``images`` is ordered class-major (class 0 for every z, then class 1, ...)."""
    plt = pyplot()
    arr = grid_array(images, n_z, pad=1)
    fig, ax = plt.subplots(figsize=(n_z * 0.5 + 0.6, len(classes) * 0.5 + 0.5))
    ax.imshow(arr)
    h = arr.shape[0] / len(classes)
    ax.set_yticks([(i + 0.5) * h for i in range(len(classes))], [f"y={c}" for c in classes], fontsize=7)
    ax.set_xticks([(j + 0.5) * arr.shape[1] / n_z for j in range(n_z)], [f"z{j}" for j in range(n_z)], fontsize=6)
    ax.set_title(title or "one column per z, one row per class", fontsize=9)
    return fig


def class_histogram_figure(hists: dict[str, list[int]], classes: list[str]):
    """Predicted-class histograms (judge), one bar group per run."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    width = 0.8 / max(1, len(hists))
    x = np.arange(len(classes))
    for i, (name, h) in enumerate(hists.items()):
        h = np.asarray(h, float)
        ax.bar(x + i * width - 0.4 + width / 2, h / max(h.sum(), 1), width, label=name)
    ax.axhline(1 / len(classes), color="k", lw=0.8, ls="--", label="uniform")
    ax.set_xticks(x, classes)
    ax.set_xlabel("class predicted by the judge")
    ax.set_ylabel("fraction of samples")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def comparison_figure(rows: list[tuple[str, torch.Tensor]], *, per_row: int = 10, title: str = ""):
    """One row of samples per variant, its label (with its metrics) on the left."""
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(per_row * 0.6 + 2.8, len(rows) * 0.7 + 0.4), squeeze=False)
    for ax, (label, imgs) in zip(axes[:, 0], rows):
        ax.imshow(grid_array(imgs[:per_row], per_row, pad=1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def epoch_metrics_figure(history: list[dict]):
    """Judge metrics per epoch (each checkpoint): Fréchet distance, entropy, confidence."""
    plt = pyplot()
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
    for ax, key in zip(axes, ("frechet", "class_entropy", "confidence")):
        ax.plot(ep, [r.get(key, np.nan) for r in history], marker="o")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if any("cond_acc" in r for r in history):
        axes[2].plot(ep, [r.get("cond_acc", np.nan) for r in history], marker="s", label="cond_acc")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def side_by_side_figure(grids: list[tuple[str, torch.Tensor, int]]):
    """One sample grid per (title, images, nrow), next to each other (e.g. the course's GAN and a preset)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.6), squeeze=False)
    for ax, (title, images, nrow) in zip(axes[0], grids):
        ax.imshow(grid_array(images, nrow))
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig
