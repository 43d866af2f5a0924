"""Images in, model inputs out: the one place that knows about uint8 vs normalised tensors.

Every verb takes ``images`` as either uint8 B×C×H×W (raw pixels: preprocessed with the bundle's own
resize + normalisation) or a float tensor that is already the model's normalised input. Pixel-space
quantities (ε, L2/L∞ in 0–255 units, PSNR, SSIM) go through :func:`normalised_to_pixels`, the inverse of the
normalisation: ``p = x·std + mean`` in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import ModelBundle


def model_input(bundle: ModelBundle, images: torch.Tensor) -> torch.Tensor:
    """uint8 images → ``bundle.preprocess``; float tensors are taken as already normalised."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise CnnlabError(f"images must be a B×C×H×W tensor (uint8 pixels or normalised floats), got {shape}")
    x = bundle.preprocess(images) if images.dtype == torch.uint8 else images.float()
    if x.shape[1] != bundle.in_channels:
        raise CnnlabError(f"{bundle.arch} takes {bundle.in_channels}-channel inputs; got {x.shape[1]} channels "
                          "(pass uint8 images to let cnnlab convert them)")
    return x.detach().to(bundle.device)


def channel_stats(bundle: ModelBundle, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mean, std as (1,C,1,1) on ``x``'s device and dtype."""
    m = torch.tensor(bundle.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(bundle.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return m, s


def bounds(bundle: ModelBundle, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``bundle.pixel_bounds`` (valid [0,1] pixels in normalised space) on ``x``'s device."""
    lo, hi = bundle.pixel_bounds
    return lo.to(x.device, x.dtype), hi.to(x.device, x.dtype)


def clamp_to_pixels(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
    lo, hi = bounds(bundle, x)
    return torch.maximum(torch.minimum(x, hi), lo)


def normalised_to_pixels(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
    """Normalised model input → pixels in [0, 1] (not clamped)."""
    m, s = channel_stats(bundle, x)
    return x * s + m


def pixels_to_normalised(bundle: ModelBundle, p: torch.Tensor) -> torch.Tensor:
    m, s = channel_stats(bundle, p)
    return (p - m) / s


def normalised_to_uint8(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
    """Normalised input → the uint8 image a user would save (rounded, clamped)."""
    return normalised_to_pixels(bundle, x.detach()).mul(255).round().clamp(0, 255).to(torch.uint8).cpu()


def as_targets(targets, n: int, device) -> torch.Tensor:
    """An int, a sequence or a tensor of class indices → int64 tensor (n,)."""
    t = torch.as_tensor(targets if not isinstance(targets, int) else [targets] * n, dtype=torch.int64)
    t = t.reshape(-1)
    if t.numel() == 1 and n > 1:
        t = t.expand(n)
    if t.numel() != n:
        raise CnnlabError(f"got {t.numel()} targets for {n} images; give one target per image or a single one")
    return t.to(device)


def check_classes(bundle: ModelBundle, targets: torch.Tensor, num_classes: int, what: str = "target") -> None:
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        bad = int(targets[(targets < 0) | (targets >= num_classes)][0])
        raise CnnlabError(f"{what} class {bad} is out of range for {bundle.arch} ({num_classes} classes: 0..{num_classes - 1})")


def class_name(bundle: ModelBundle, k: int) -> str:
    cats: Sequence[str] | None = bundle.categories
    return str(cats[k]) if cats and 0 <= k < len(cats) else str(k)


def short_name(s: str, n: int = 18) -> str:
    """A class name for a figure title: the first synonym ("tabby, tabby cat" → "tabby"), cut to ``n``."""
    s = str(s).split(",")[0]
    return s if len(s) <= n else s[:n - 1] + "…"


def batched(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield slice(s, min(n, s + batch_size))
