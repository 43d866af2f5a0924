"""Source and target domains held in memory as uint8 tensors.

A domain is named like a dataset (``mnist``, ``mnist-embedded``, ``digits``, ``imagefolder:PATH``...)
or ``mnistm``: MNIST-M built from the *source* digits (train from train, test from test) and the
photographs given by ``photos`` (``bsds500``, ``embedded`` or a folder). ``mnistm-0.875`` is MNIST-M
of the digits drawn 0.875× smaller (:func:`~cnnlab.adapt.mnistm.shrunk_digits`). As the *source*,
``mnistm`` reverses the pair (MNIST-M → MNIST): it is built from one half of the target's training
digits, and the target keeps the other half, so no digit is seen in both domains. Every image is brought to
28×28 at batch time and standardised with the MNIST statistics on 3 channels, as in the course.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.adapt.mnistm import (COURSE_SEED, Photos, bsds500_photos, build_mnistm, embedded_photos, load_photos,
                                 mnistm_scale, shrunk_digits)
from cnnlab.adapt.networks import DANN_MEAN, DANN_STD
from cnnlab.data import TensorImageSet, load_dataset, to_float
from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

INPUT_SIZE = 28
SPLIT_SEED = 0  # the source validation split never changes with --seed


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 B×C×h×w → float B×3×28×28, standardised with MNIST's mean/std on every channel."""
    x = to_float(images, size=INPUT_SIZE, channels=3, mean=DANN_MEAN, std=DANN_STD)
    return x.contiguous(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN)


@dataclass
class DomainPair:
    source_train: TensorImageSet
    source_val: TensorImageSet  # held out from the source training set: labels usable for model selection
    source_test: TensorImageSet
    target_train: TensorImageSet  # its labels are never used, except by the target-only oracle
    target_test: TensorImageSet  # labels used only for reporting (and the oracle selection, marked)
    source: str
    target: str
    photos: str = ""

    @property
    def classes(self) -> list[str]:
        return self.source_train.classes

    def summary(self) -> dict:
        return {"source": self.source, "target": self.target, "photos": self.photos,
                **{f"n_{k}": len(getattr(self, k)) for k in
                   ("source_train", "source_val", "source_test", "target_train", "target_test")}}


def resolve_photos(photos: str | None, data_root) -> Photos:
    """``bsds500`` (needs --data-root), ``embedded``, a folder, or None: BSDS500 when present, else embedded."""
    if photos in (None, "auto"):
        if data_root is not None and (Path(data_root).expanduser() / "BSDS500" / "train").is_dir():
            return bsds500_photos(data_root)
        return embedded_photos()
    if photos == "bsds500":
        if data_root is None:
            raise CnnlabError("--photos bsds500 needs --data-root (the folder holding BSDS500/{train,val,test})")
        return bsds500_photos(data_root)
    if photos == "embedded":
        return embedded_photos()
    return load_photos(photos)


def _load(name: str, split: str, data_root, download: bool) -> TensorImageSet:
    ds = load_dataset(name, split, data_root=data_root, download=download, size=INPUT_SIZE, in_memory=True)
    ts = ds if isinstance(ds, TensorImageSet) else ds.materialize()
    if len(ts) == 0:
        raise CnnlabError(f"domain {name!r} ({split}) holds no image")
    return ts


def _subset(ds: TensorImageSet, n: int | None, seed: int) -> TensorImageSet:
    if n is None or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].sort().values
    return ds.subset(idx, name=f"{ds.name}[{n}]")


def load_domains(source: str = "mnist-embedded", target: str = "mnistm", *, data_root=None, download: bool = False,
                 photos: str | None = None, mnistm_seed: int = COURSE_SEED, val_size: int = 5000,
                 subset: int | None = None) -> DomainPair:
    """Load both domains. ``subset`` caps every split (seeded) for quick runs; ``val_size`` source images
    (at most a tenth of the source training set) are held out for label-free model selection."""
    if target == source:
        raise CnnlabError(f"--source and --target are both {source!r}; adaptation needs two different domains")
    if mnistm_scale(source) is not None and mnistm_scale(target) is not None:
        raise CnnlabError(f"--source {source} --target {target}: at most one side can be MNIST-M (it is built from "
                          "the other side's digits)")
    photo_desc = ""

    def mnistm(digits_train, digits_test, scale):
        nonlocal photo_desc
        ph = resolve_photos(photos, data_root)
        photo_desc = f"{ph.source}: {len(ph)} photos" + (f", digits at {scale:g}× scale" if scale != 1 else "")
        if scale != 1:
            digits_train, digits_test = shrunk_digits(digits_train, scale), shrunk_digits(digits_test, scale)
        return (build_mnistm(digits_train, ph, seed=mnistm_seed, stream=0, name=f"mnistm-{digits_train.name}"),
                build_mnistm(digits_test, ph, seed=mnistm_seed, stream=1, name=f"mnistm-{digits_test.name}"))

    if mnistm_scale(source) is not None:  # the reverse pair: MNIST-M from one half of the target's digits
        t_train, t_test = _load(target, "train", data_root, download), _load(target, "test", data_root, download)
        halves = torch.randperm(len(t_train), generator=torch.Generator().manual_seed(SPLIT_SEED))
        half = len(t_train) // 2
        digits = t_train.subset(halves[:half].sort().values, name=f"{t_train.name}-half1")
        t_train = t_train.subset(halves[half:].sort().values, name=f"{t_train.name}-half2")
        s_train, s_test = mnistm(digits, t_test, mnistm_scale(source))
    else:
        s_train, s_test = _load(source, "train", data_root, download), _load(source, "test", data_root, download)
        if mnistm_scale(target) is not None:
            t_train, t_test = mnistm(s_train, s_test, mnistm_scale(target))
        else:
            t_train, t_test = _load(target, "train", data_root, download), _load(target, "test", data_root, download)
    if list(s_train.classes) != list(t_train.classes):
        raise CnnlabError(f"--source {source} and --target {target} have different classes "
                          f"({s_train.classes[:5]}… vs {t_train.classes[:5]}…); both domains need the same class names")
    same = mnistm_scale(target) is not None  # keep MNIST-M aligned with its source digits (same indices)
    s_train, t_train = _subset(s_train, subset, 1), _subset(t_train, subset, 1 if same else 2)
    s_test, t_test = _subset(s_test, subset, 3), _subset(t_test, subset, 3 if same else 4)
    if len(s_train) < 2:
        raise CnnlabError(f"--source {source}: its train split holds {len(s_train)} image(s); adaptation needs at "
                          "least 2 (one to train on, one held out for label-free model selection)")
    # at least one held-out image: label-free selection scores every epoch on it
    n_val = max(1, min(val_size, len(s_train) // 10))
    perm = torch.randperm(len(s_train), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    return DomainPair(s_train.subset(train_idx, name=f"{s_train.name}-fit"), s_train.subset(val_idx, name=f"{s_train.name}-val"),
                      s_test, t_train, t_test, source, target, photo_desc)
