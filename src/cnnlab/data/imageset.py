"""The one image container every part uses.

An :class:`ImageSet` is a labelled set of uint8 images in N×C×H×W layout. Two kinds exist:

* :class:`TensorImageSet`: decoded once and kept in memory as a uint8 tensor (MNIST, digits, the
  25 ImageNet images, folders that fit in memory). Batches are drawn by indexing, never by
  per-sample PIL transforms.
* :class:`FolderImageSet`: a list of files decoded lazily at a fixed size, for folders too large
  to hold; batches stream through a DataLoader so memory stays bounded.

Both give ``labels``, ``classes``, ``fingerprint`` (for caches) and ``batches()``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from cnnlab.data.decode import DecodeDataset, Skipped, collate_decoded, decode_image


class ImageSet:
    name: str
    classes: list[str]
    labels: torch.Tensor  # int64 (N,)
    skipped: list[Skipped]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def fingerprint(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def batches(self, batch_size: int, *, num_workers: int = 0,
                progress: str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(uint8 images B×C×H×W, int64 labels)`` in order."""
        raise NotImplementedError  # pragma: no cover

    def materialize(self) -> "TensorImageSet":
        raise NotImplementedError  # pragma: no cover


@dataclass
class TensorImageSet(ImageSet):
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor
    classes: list[str]
    name: str = "tensors"
    skipped: list[Skipped] = field(default_factory=list)
    files: list[str] | None = None  # source file per image, when there is one

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} {tuple(self.images.shape)}")
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if len(self.labels) != len(self.images):
            raise ValueError("images and labels differ in length")

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1()
        h.update(self.name.encode())
        h.update(str(tuple(self.images.shape)).encode())
        h.update(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray, name: str | None = None) -> "TensorImageSet":
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        files = [self.files[i] for i in idx.tolist()] if self.files else None
        return TensorImageSet(self.images[idx], self.labels[idx], list(self.classes),
                              name or f"{self.name}[{len(idx)}]", list(self.skipped), files)  # skips stay counted

    def batches(self, batch_size: int, *, num_workers: int = 0, progress: str | None = None):
        from cnnlab.progress import progress_bar

        starts = range(0, len(self), batch_size)
        for s in progress_bar(starts, desc=progress, total=len(starts), disable=progress is None):
            yield self.images[s:s + batch_size], self.labels[s:s + batch_size]

    def materialize(self) -> "TensorImageSet":
        return self


class FolderImageSet(ImageSet):
    """Files decoded on demand at ``size``×``size`` with ``channels`` channels."""

    def __init__(self, files: list[str], labels: Sequence[int], classes: list[str], *,
                 size: int, channels: int = 3, name: str = "folder", skipped: list[Skipped] | None = None):
        self.files = list(files)
        self.labels = torch.as_tensor(list(labels), dtype=torch.int64)
        self.classes = list(classes)
        self.size = int(size)
        self.channels = int(channels)
        self.name = name
        self.skipped = list(skipped or [])

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1()
        h.update(f"{self.name}|{self.size}|{self.channels}".encode())
        for f, y in zip(self.files, self.labels.tolist()):
            st = Path(f).stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}|{y}".encode())
        return h.hexdigest()[:16]

    def subset(self, indices, name: str | None = None) -> "FolderImageSet":
        idx = [int(i) for i in np.asarray(indices)]
        return FolderImageSet([self.files[i] for i in idx], self.labels[idx].tolist(), self.classes,
                              size=self.size, channels=self.channels, name=name or f"{self.name}[{len(idx)}]",
                              skipped=self.skipped)

    def batches(self, batch_size: int, *, num_workers: int = 0, progress: str | None = None):
        from torch.utils.data import DataLoader

        from cnnlab.progress import progress_bar

        ds = DecodeDataset(self.files, self.labels, self.size, self.channels)
        loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_decoded,
                            persistent_workers=False)
        for imgs, ys, bad in progress_bar(loader, desc=progress, total=len(loader), disable=progress is None):
            for path, reason in bad:  # a file that passed the scan but failed to decode
                self.skipped.append(Skipped(path, reason))
            yield imgs, ys

    def materialize(self) -> TensorImageSet:
        from cnnlab.progress import progress_bar

        imgs, ys, files = [], [], []
        pairs = zip(self.files, self.labels.tolist())
        for f, y in progress_bar(pairs, desc=f"decoding {self.name}", total=len(self.files)):
            try:
                imgs.append(decode_image(f, self.size, self.channels))
            except ValueError as e:
                self.skipped.append(Skipped(f, str(e)))
                continue
            ys.append(y)
            files.append(f)
        images = torch.stack(imgs) if imgs else torch.zeros(0, self.channels, self.size, self.size, dtype=torch.uint8)
        return TensorImageSet(images, torch.tensor(ys, dtype=torch.int64), self.classes, self.name,
                              list(self.skipped), files)
