"""The MNIST-M builder (Ganin & Lempitsky 2015, §5.1): digits blended with crops of photographs.

For each digit, one random photograph and one random crop of the digit's size are drawn; the MNIST-M
image is |crop − digit| with the digit binarised (pixels > 0 become 255), so the digit appears as the
colour-inverted photo on the untouched photo. Every draw comes from one ``numpy`` generator seeded
with (seed, stream), so the same inputs and seed give byte-identical images (the course's script drew
the offsets from the unseeded global generator and was not reproducible). The result is cached as
uint8 arrays in ``cache_dir("mnistm")``, keyed by the digits, the photographs and the seed.

Photographs: any folder (``load_photos``); BSDS500 as the course used it (``bsds500_photos``: the
200 training photos, like the original ``create_mnistm.py``); offline, the colour photographs that
scikit-image and scikit-learn ship (``embedded_photos``).
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import ImageSet, TensorImageSet
from cnnlab.errors import CnnlabError
from cnnlab.runs import atomic_write_bytes, cache_dir

log = logging.getLogger("cnnlab")

BUILDER_VERSION = 1  # bump when the blending or the order of draws changes (invalidates caches)
COURSE_SEED = 42
BSDS_SPLITS = ("train",)  # the course / create_mnistm.py used BSDS500's training photos only
EMBEDDED_SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
                    "stereo_motorcycle")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class Photos:
    """Background photographs, each H×W×3 uint8, in a fixed order."""

    images: list[np.ndarray]
    names: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for name, im in zip(self.names, self.images):
            h.update(f"{name}|{im.shape}".encode())
            h.update(np.ascontiguousarray(im).tobytes())
        return h.hexdigest()[:16]


def _rgb(arr: np.ndarray) -> np.ndarray:
    """Any photo array → H×W×3 uint8 (gray replicated, alpha dropped)."""
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        raise ValueError(f"photo has dtype {arr.dtype}; expected uint8")
    return np.ascontiguousarray(arr)


def load_photos(folder: str | Path, *, min_side: int = 28) -> Photos:
    """Every readable photo under ``folder`` (recursively, sorted by path) at its native size."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CnnlabError(f"--photos {folder}: not a folder; give a folder of photographs (e.g. BSDS500/train)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS and p.is_file())
    images, names, skipped = [], [], []
    for f in files:
        try:
            with Image.open(f) as im:
                arr = _rgb(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            skipped.append(f"{f.name} ({type(e).__name__})")
            continue
        if min(arr.shape[:2]) <= min_side:
            skipped.append(f"{f.name} (smaller than {min_side + 1} px)")
            continue
        images.append(arr)
        names.append(str(f.relative_to(folder)))
    if skipped:
        log.warning("photos in %s: skipped %d file(s): %s", folder, len(skipped), ", ".join(skipped[:5]))
    if not images:
        raise CnnlabError(f"--photos {folder}: no usable photograph (need images larger than {min_side}×{min_side} "
                          f"with extensions {', '.join(PHOTO_EXTENSIONS)})")
    return Photos(images, names, str(folder))


def bsds500_photos(data_root: str | Path, splits: tuple[str, ...] = BSDS_SPLITS) -> Photos:
    root = Path(data_root).expanduser() / "BSDS500"
    missing = [s for s in splits if not (root / s).is_dir()]
    if missing:
        raise CnnlabError(f"BSDS500 not found: {root}/{missing[0]} is missing. Expected {root}/{{train,val,test}}/*.jpg "
                          "(from Berkeley's BSR_bsds500.tgz, BSR/BSDS500/data/images), or pass --photos FOLDER")
    parts = [load_photos(root / s) for s in splits]
    return Photos([im for p in parts for im in p.images], [f"{s}/{n}" for s, p in zip(splits, parts) for n in p.names],
                  f"{root} ({'+'.join(splits)})")


def embedded_photos() -> Photos:
    """The colour photographs that scikit-image and scikit-learn ship (offline)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    images, names = [], []
    for name in EMBEDDED_SKIMAGE:
        try:
            arr = getattr(skimage.data, name)()
        except Exception as e:  # an optional image that needs a download on this install
            log.info("skimage.data.%s unavailable (%s); skipped", name, type(e).__name__)
            continue
        arr = arr[0] if isinstance(arr, tuple) else arr  # stereo pair: the left view
        images.append(_rgb(arr))
        names.append(f"skimage.data.{name}")
    sk = load_sample_images()
    for f, arr in zip(sk.filenames, sk.images):
        images.append(_rgb(arr))
        names.append(f"sklearn.{Path(f).name}")
    if len(images) < 2:
        raise CnnlabError("fewer than 2 embedded photographs are available; pass --photos FOLDER")
    return Photos(images, names, "embedded (scikit-image + scikit-learn sample photos)")


# --------------------------------------------------------------------------- blending
def blend_mnistm(digits: np.ndarray, photos: Photos, *, rng: np.random.Generator, threshold: int = 0) -> np.ndarray:
    """digits uint8 (N, H, W) → MNIST-M uint8 (N, H, W, 3).

    Draw order (fixed, so results are reproducible): all N photo indices, then all N row offsets,
    then all N column offsets.
    """
    n, h, w = digits.shape
    sizes = np.array([im.shape[:2] for im in photos.images])  # (P, 2)
    if (sizes[:, 0] <= h).any() or (sizes[:, 1] <= w).any():
        raise CnnlabError(f"every photograph must be larger than the digits ({h}×{w})")
    which = rng.integers(0, len(photos), size=n)  # (N,)
    top = rng.integers(0, sizes[which, 0] - h)  # in [0, H_photo − h), as create_mnistm.py
    left = rng.integers(0, sizes[which, 1] - w)
    ink = np.where(digits > threshold, 255, 0).astype(np.int16)[..., None]  # (N, h, w, 1)
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    rows, cols = np.arange(h), np.arange(w)
    for p in np.unique(which):  # vectorised per photo: fancy-index all crops of that photo at once
        idx = np.flatnonzero(which == p)
        r = (top[idx, None] + rows)[:, :, None]  # (k, h, 1)
        c = (left[idx, None] + cols)[:, None, :]  # (k, 1, w)
        crops = photos.images[p][r, c].astype(np.int16)  # (k, h, w, 3)
        out[idx] = np.abs(crops - ink[idx]).astype(np.uint8)
    return out


def _gray_digits(ds: ImageSet) -> np.ndarray:
    ts = ds if isinstance(ds, TensorImageSet) else ds.materialize()
    x = ts.images
    if x.shape[1] == 3:  # a colour digit set: its luminance
        x = x.float().mean(1, keepdim=True).round().to(torch.uint8)
    if x.shape[1] != 1:
        raise CnnlabError(f"MNIST-M needs 1- or 3-channel digits; {ds.name} has {x.shape[1]} channels")
    return x[:, 0].numpy()


def build_mnistm(digits: ImageSet, photos: Photos, *, seed: int = COURSE_SEED, stream: int = 0,
                 threshold: int = 0, cache: bool = True, name: str | None = None) -> TensorImageSet:
    """MNIST-M from a digit set (labels kept) and photographs; ``stream`` separates splits (0 train, 1 test)."""
    key_src = f"v{BUILDER_VERSION}|{digits.fingerprint}|{photos.fingerprint}|{seed}|{stream}|{threshold}"
    key = hashlib.sha1(key_src.encode()).hexdigest()[:20]
    path = cache_dir("mnistm") / f"mnistm-{key}.npz" if cache else None
    name = name or f"mnistm({digits.name})"
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                imgs, labels = z["images"], z["labels"]
            return TensorImageSet(torch.from_numpy(imgs), torch.from_numpy(labels), list(digits.classes), name)
        except (OSError, KeyError, ValueError) as e:
            log.warning("MNIST-M cache %s unreadable (%s); rebuilding", path, e)
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream]))
    gray = _gray_digits(digits)
    imgs = np.ascontiguousarray(blend_mnistm(gray, photos, rng=rng, threshold=threshold).transpose(0, 3, 1, 2))
    labels = digits.labels.numpy().astype(np.int64)
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, images=imgs, labels=labels)
        atomic_write_bytes(path, buf.getvalue())
    return TensorImageSet(torch.from_numpy(imgs), torch.from_numpy(labels), list(digits.classes), name)


def shrunk_digits(digits: ImageSet, scale: float) -> TensorImageSet:
    """The same digits drawn ``scale``× smaller in the same frame: padded by round(h/2 · (1/scale − 1)) px on
    each side, then resized back to h×w (0.875 on 28 px: 2 px each side, 32 → 28). A robustness target
    that the course never built: MNIST-M of smaller digits."""
    from cnnlab.data import resize_uint8

    if not 0.25 <= scale < 1:
        raise CnnlabError(f"MNIST-M scale {scale}: use a scale in [0.25, 1), e.g. mnistm-0.875")
    ts = digits if isinstance(digits, TensorImageSet) else digits.materialize()
    h = ts.images.shape[-1]
    pad = round(h / 2 * (1 / scale - 1))
    padded = torch.nn.functional.pad(ts.images, (pad, pad, pad, pad))
    return TensorImageSet(resize_uint8(padded, h), ts.labels.clone(), list(ts.classes), f"{ts.name}×{scale:g}")


def mnistm_scale(name: str) -> float | None:
    """``mnistm`` → 1.0, ``mnistm-0.875`` → 0.875, anything else → None (not an MNIST-M domain)."""
    if name == "mnistm":
        return 1.0
    if name.startswith("mnistm-"):
        try:
            return float(name[len("mnistm-"):])
        except ValueError:
            raise CnnlabError(f"domain {name!r}: write MNIST-M at a scale as mnistm-SCALE, e.g. mnistm-0.875") from None
    return None
