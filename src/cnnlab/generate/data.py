"""The images a GAN trains on: uint8 tensors at the GAN's size, held in memory, and the [−1, 1] range
of G's Tanh."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.data import resize_uint8
from cnnlab.errors import CnnlabError
from cnnlab.generate.judge import DIGIT_CLASSES


@dataclass
class GANData:
    train: torch.Tensor  # uint8 N×C×size×size
    labels: torch.Tensor  # int64 (N,)
    test: torch.Tensor  # uint8, the real reference for the judge
    test_labels: torch.Tensor
    classes: list[str]
    name: str

    @property
    def channels(self) -> int:
        return int(self.train.shape[1])

    @property
    def digits(self) -> bool:
        return self.classes == DIGIT_CLASSES


def _load_cifar10(split: str, data_root, download: bool):
    from torchvision.datasets import CIFAR10

    from cnnlab.data import TensorImageSet

    if data_root is None:
        raise CnnlabError("dataset 'cifar10' needs --data-root (torchvision layout <data-root>/cifar-10-batches-py)")
    try:
        ds = CIFAR10(str(data_root), train=(split == "train"), download=download)
    except RuntimeError:
        raise CnnlabError(f"CIFAR-10 not found under {data_root}/cifar-10-batches-py; get it with "
                          "torchvision.datasets.CIFAR10(root, download=True) or rerun with --download") from None
    imgs = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # N×3×32×32 uint8
    return TensorImageSet(imgs, torch.tensor(ds.targets), list(ds.classes), f"cifar10-{split}")


_DATA_CACHE: dict[tuple, GANData] = {}  # a sweep and the lab reuse one loaded, resized dataset


def load_gan_data(dataset: str, *, size: int, data_root=None, download: bool = False,
                  subset: int | None = None) -> GANData:
    """Train and test images of ``dataset`` as uint8 ``size``×``size`` tensors (cached per process;
    the tensors are shared, never modified)."""
    key = (dataset, size, str(data_root), subset)
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= 4:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = _load_gan_data(dataset, size=size, data_root=data_root, download=download, subset=subset)
    return _DATA_CACHE[key]


def _load_gan_data(dataset: str, *, size: int, data_root, download: bool, subset: int | None) -> GANData:
    from cnnlab.data import load_dataset

    def load(split):
        if dataset == "cifar10":
            return _load_cifar10(split, data_root, download)
        return load_dataset(dataset, split, data_root=data_root, download=download, size=size, in_memory=True)

    train, test = load("train").materialize(), load("test").materialize()
    if len(train) == 0:
        raise CnnlabError(f"dataset {dataset!r} has no training images")
    images, labels = train.images, train.labels
    if subset is not None and subset < len(images):  # a fixed random subset (datasets may be sorted by class)
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:subset].sort().values
        images, labels = images[keep], labels[keep]
    return GANData(resize_uint8(images, size), labels.clone(), resize_uint8(test.images[:10000], size),
                   test.labels[:10000].clone(), list(train.classes), dataset)


def to_gan_range(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(127.5).sub_(1.0)  # uint8 → [−1, 1], the range of G's Tanh
