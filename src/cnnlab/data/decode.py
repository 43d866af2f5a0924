"""Decoding image files robustly: every odd file is either decoded correctly or rejected with a reason.

Handled: grayscale (replicated to 3 channels when asked), palette/alpha, CMYK, 16-bit and 32-bit
integer images (rescaled to 8 bits), huge JPEGs (decoded at reduced size via ``draft``).
Rejected with a reason (``ValueError``): empty, truncated or corrupt files, images smaller than
``MIN_SIDE`` pixels, non-image files.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnlab.errors import CnnlabError


@dataclass
class Skipped:
    """A file that was left out, and why (counted in the run's metrics)."""

    path: str
    reason: str


IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MIN_SIDE = 8  # smaller images carry no usable content after resizing to a CNN's input
Image.MAX_IMAGE_PIXELS = 20_000 * 20_000  # real photos only; beyond this decode_image refuses the file


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float images → 8-bit grayscale by their own value range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if img.mode == "I" and arr.max() <= 255:
            hi = 255.0
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return img


def decode_image(path: str | os.PathLike, size: int | None, channels: int = 3) -> torch.Tensor:
    """Decode ``path`` → uint8 tensor (channels, size, size): shorter side resized to ``size``,
    then centre-cropped (the torchvision ``Resize``+``CenterCrop`` convention). ``size=None`` keeps
    the native size."""
    path = str(path)
    if os.path.getsize(path) == 0:
        raise ValueError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL only warns between 1× and 2× MAX_IMAGE_PIXELS and would decode the whole image:
            # refuse it from the header, before any pixel is allocated.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if size is not None and im.format == "JPEG":
                im.draft("RGB" if channels == 3 else "L", (size, size))  # fast decode of huge JPEGs
            im.load()
            img = _to_8bit(im)
            if min(img.size) < MIN_SIDE:
                raise ValueError(f"image is {img.size[0]}×{img.size[1]} pixels; need at least {MIN_SIDE}×{MIN_SIDE}")
            target = "RGB" if channels == 3 else "L"
            if img.mode in ("P", "PA"):  # palette: resolve transparency before dropping it
                img = img.convert("RGBA")
            if img.mode != target:  # CMYK, RGBA, LA, 1-bit, grayscale → target (gray is replicated)
                img = img.convert(target)
            if size is not None:
                w, h = img.size
                s = size / min(w, h)
                nw, nh = max(size, round(w * s)), max(size, round(h * s))
                img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
                left, top = (nw - size) // 2, (nh - size) // 2
                img = img.crop((left, top, left + size, top + size))
            arr = np.array(img, dtype=np.uint8)  # a writable copy for torch
    except UnidentifiedImageError:
        raise ValueError("not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"image too large to decode safely (its header claims more than {Image.MAX_IMAGE_PIXELS:,} "
                         "pixels); downscale it first") from None
    except (OSError, SyntaxError) as e:  # truncated data, broken headers
        raise ValueError(f"corrupt or truncated image ({e})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def scan_folder(root: str | os.PathLike, *, what: str = "image folder"):
    """List ``root/<class>/<image>`` files. Returns ``(files, labels, classes, skipped)``.

    Non-image files are skipped (and reported); an empty class folder or a folder with no class
    subfolders is an error, since a class with no example cannot be learned or scored.
    """
    root = Path(root)
    if not root.is_dir():
        raise CnnlabError(f"{what} {root} does not exist or is not a folder; expected layout {root}/<class>/<image>.jpg")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise CnnlabError(f"{what} {root} has no class subfolders; expected layout {root}/<class>/<image>.jpg")
    files, labels, skipped = [], [], []
    for y, cls in enumerate(classes):
        n_before = len(files)
        for f in sorted((root / cls).rglob("*")):
            if f.is_dir() or f.name.startswith("."):
                continue
            if f.suffix.lower() not in IMG_EXTENSIONS:
                skipped.append(Skipped(str(f), f"not an image file (extension {f.suffix or 'none'!r})"))
                continue
            if f.stat().st_size == 0:
                skipped.append(Skipped(str(f), "empty file (0 bytes)"))
                continue
            files.append(str(f))
            labels.append(y)
        if len(files) == n_before:
            raise CnnlabError(f"class folder {root / cls} contains no images; add images ({', '.join(IMG_EXTENSIONS[:4])}, …) or remove the folder")
    return files, labels, classes, skipped


class DecodeDataset(torch.utils.data.Dataset):
    """Files → uint8 tensors, for streaming extraction. A bad file yields ``(None, label, reason)``."""

    def __init__(self, files, labels, size, channels):
        self.files, self.labels, self.size, self.channels = files, labels, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        try:
            return decode_image(self.files[i], self.size, self.channels), int(self.labels[i]), None
        except ValueError as e:
            return None, int(self.labels[i]), (self.files[i], str(e))


def collate_decoded(items):
    good = [(x, y) for x, y, bad in items if x is not None]
    bad = [bad for x, _, bad in items if x is None]
    if good:
        xs = torch.stack([x for x, _ in good])
        ys = torch.tensor([y for _, y in good], dtype=torch.int64)
    else:
        xs, ys = torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return xs, ys, bad
