"""``CNNFeatures``: CNN feature extraction as a scikit-learn transformer.

Works inside ``Pipeline`` and ``GridSearchCV`` (``layer`` is a parameter like any other)::

    pipe = Pipeline([("cnn", CNNFeatures(arch="mobilenet_v2", weights="w.pth", mean=(.5,)*3, std=(.5,)*3)),
                     ("svm", LinearSVC())])
    GridSearchCV(pipe, {"cnn__layer": ["pool", "last_conv"], "svm__C": [0.1, 1, 10]}, cv=3).fit(X, y)

``X`` is a uint8 array N×C×H×W (or N×H×W×C) or a list of image paths. Features of each image are
memoised per (model, layer), so cross-validation folds and grid points never extract an image twice.
``layer="relu6+relu7"`` concatenates layers (each L2-normalised, then the whole).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from cnnlab.models.registry import ModelBundle, build_model

_BUNDLES: dict[tuple, ModelBundle] = {}
_ROWS: dict[tuple, dict[str, np.ndarray]] = {}


def _bundle(arch, weights, mean, std, device) -> ModelBundle:
    key = (arch, str(weights), tuple(mean) if mean else None, tuple(std) if std else None, str(device))
    if key not in _BUNDLES:
        _BUNDLES[key] = build_model(arch, weights, mean=mean, std=std, device=device)
    return _BUNDLES[key]


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

        if not hasattr(self, "bundle_"):
            self.fit(X)
        ids = _row_ids(X)
        parts = []
        for layer in self.layers_:
            memo = _ROWS.setdefault((self.bundle_.arch, self.bundle_.weights_id, layer, self.spatial), {})
            todo = [i for i, r in enumerate(ids) if r not in memo]
            if todo:
                sub = [X[i] for i in todo] if not isinstance(X, np.ndarray) else X[todo]
                f = extract_features(self.bundle_, self._as_imageset(sub), [layer], batch_size=self.batch_size,
                                     spatial=self.spatial, use_cache=False, progress=None)
                for i, v in zip(todo, f.arrays[layer]):
                    memo[ids[i]] = np.asarray(v)
            parts.append(np.stack([memo[r] for r in ids]))
        out = np.concatenate(parts, axis=1)
        if len(parts) > 1:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
