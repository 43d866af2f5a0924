"""``CNNFeatures``: CNN feature extraction as a scikit-learn transformer.

Works inside ``Pipeline`` and ``GridSearchCV`` (``layer`` is a parameter like any other)::

    pipe = Pipeline([("cnn", CNNFeatures(arch="mobilenet_v2", weights="w.pth", mean=(.5,)*3, std=(.5,)*3)),
                     ("svm", LinearSVC())])
    GridSearchCV(pipe, {"cnn__layer": ["pool", "last_conv"], "svm__C": [0.1, 1, 10]}, cv=3).fit(X, y)

``X`` is a uint8 array N×C×H×W (or N×H×W×C) or a list of image paths. Features of each image are
memoised per (model, preprocessing, layer) in a bounded cache (512 MB), so cross-validation folds and
grid points never extract an image twice. ``transform`` before ``fit`` raises ``NotFittedError``.
``layer="relu6+relu7"`` concatenates layers (each L2-normalised, then the whole).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from cnnlab.models.registry import ModelBundle, build_model

class _LRU:
    """A small least-recently-used cache bounded in entries or bytes. Module-level, so that the clones
    ``GridSearchCV`` makes share it; bounded, so that a long session does not grow it without end."""

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None):
        self.items: OrderedDict = OrderedDict()  # key -> (value, bytes)
        self.max_items, self.max_bytes, self.bytes = max_items, max_bytes, 0

    def get(self, key):
        if key not in self.items:
            return None
        self.items.move_to_end(key)
        return self.items[key][0]

    def put(self, key, value, nbytes: int = 0) -> None:
        if key in self.items:
            self.bytes -= self.items.pop(key)[1]
        self.items[key] = (value, nbytes)
        self.bytes += nbytes
        while len(self.items) > 1 and ((self.max_items and len(self.items) > self.max_items)
                                       or (self.max_bytes and self.bytes > self.max_bytes)):
            self.bytes -= self.items.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self.items)


_BUNDLES = _LRU(max_items=2)  # built models (a VGG16 is 0.55 GB)
_ROWS = _LRU(max_bytes=512 * 1024**2)  # one feature row per (model, preprocessing, layer, image)


def _bundle(arch, weights, mean, std, device) -> ModelBundle:
    key = (arch, str(weights), tuple(mean) if mean else None, tuple(std) if std else None, str(device))
    bundle = _BUNDLES.get(key)
    if bundle is None:
        bundle = build_model(arch, weights, mean=mean, std=std, device=device)
        _BUNDLES.put(key, bundle)
    return bundle


def _row_ids(X) -> list[str]:
    if isinstance(X, np.ndarray):
        return [hashlib.sha1(r.tobytes()).hexdigest() for r in X]
    import os

    return [f"{p}|{os.stat(p).st_mtime_ns}" for p in X]


class CNNFeatures(TransformerMixin, BaseEstimator):
    def __init__(self, arch: str = "vgg16", weights: str = "DEFAULT", layer: str = "relu7", *, mean=None, std=None,
                 spatial: str = "avg", batch_size: int = 32, device: str = "cpu"):
        self.arch = arch
        self.weights = weights
        self.layer = layer
        self.mean = mean
        self.std = std
        self.spatial = spatial
        self.batch_size = batch_size
        self.device = device

    def fit(self, X, y=None):
        self.bundle_ = _bundle(self.arch, self.weights, self.mean, self.std, self.device)
        self.layers_ = self.layer.split("+")
        from cnnlab.models.layers import resolve_layers

        resolve_layers(self.arch, self.bundle_.model, self.layers_)  # unknown names fail here, clearly
        return self

    def _as_imageset(self, X):
        from cnnlab.data.imageset import FolderImageSet, TensorImageSet

        if isinstance(X, np.ndarray):
            arr = X if X.shape[1] in (1, 3) else X.transpose(0, 3, 1, 2)
            return TensorImageSet(torch.from_numpy(np.ascontiguousarray(arr.astype(np.uint8))),
                                  torch.zeros(len(arr), dtype=torch.int64), ["?"], "sklearn")
        return FolderImageSet(list(X), [0] * len(X), ["?"], size=self.bundle_.input_size, name="sklearn")

    def transform(self, X):
        from cnnlab.transfer.features import extract_features

        check_is_fitted(self, "bundle_")
        b = self.bundle_
        ids = _row_ids(X)
        parts = []
        for layer in self.layers_:
            # everything that changes a feature row: the weights, the preprocessing, the layer, the pooling
            model_key = (b.arch, b.weights_id, tuple(b.mean), tuple(b.std), b.input_size, layer, self.spatial)
            rows = {r: _ROWS.get((model_key, r)) for r in ids}
            todo = [i for i, r in enumerate(ids) if rows[r] is None]
            if todo:
                sub = [X[i] for i in todo] if not isinstance(X, np.ndarray) else X[todo]
                f = extract_features(b, self._as_imageset(sub), [layer], batch_size=self.batch_size,
                                     spatial=self.spatial, use_cache=False, progress=None)
                for i, v in zip(todo, f.arrays[layer]):
                    rows[ids[i]] = v = np.asarray(v)
                    _ROWS.put((model_key, ids[i]), v, v.nbytes)
            parts.append(np.stack([rows[r] for r in ids]))
        out = np.concatenate(parts, axis=1)
        if len(parts) > 1:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
