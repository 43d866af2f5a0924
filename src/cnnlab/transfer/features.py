"""Feature extraction from a pretrained CNN (Part A).

Several layers come out of ONE forward pass: torchvision's ``create_feature_extractor`` picks the
nodes by name, and we insert a ``clone`` right after each requested node so that a later in-place
ReLU (VGG, SqueezeNet) cannot overwrite the value we return. 4-D feature maps are average-pooled
over space (or flattened, on request); every vector is L2-normalised (``normalize=False`` keeps raw activations, for training a head).

Raw (pooled, un-normalised) features stream batch by batch into a disk cache (``.npy`` memmaps, written then renamed) keyed by
model, weights, layer, data and preprocessing, so a sweep over layers and C values extracts each
image once and memory stays bounded on large folders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import CnnlabError
from cnnlab.models.layers import resolve_layers
from cnnlab.models.registry import ModelBundle
from cnnlab.runs import atomic_write_text, cache_dir

log = logging.getLogger("cnnlab")


def make_extractor(model: nn.Module, nodes: list[str]) -> nn.Module:
    """A module returning ``{node: tensor}`` for ``nodes`` from one forward pass, each output
    cloned immediately after it is computed (safe from later in-place ops)."""
    from torchvision.models.feature_extraction import create_feature_extractor

    gm = create_feature_extractor(model, return_nodes={n: n for n in nodes})
    graph = gm.graph
    out_node = next(n for n in graph.nodes if n.op == "output")
    returned = out_node.args[0]
    cloned = {}
    for key, node in returned.items():
        with graph.inserting_after(node):
            cloned[key] = graph.call_function(torch.clone, (node,))
    out_node.args = (cloned,)
    graph.lint()
    gm.recompile()
    return gm.eval()


def pool_features(t: torch.Tensor, spatial: str = "avg", normalize: bool = True) -> torch.Tensor:
    """B×C×H×W → B×C (``avg``) or B×CHW (``flatten``); 2-D stays; then L2-normalise rows."""
    if t.dim() > 2:
        t = t.flatten(2).mean(-1) if spatial == "avg" else t.flatten(1)
    t = t.float()
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12) if normalize else t


@dataclass
class Features:
    """Extracted features of one dataset: ``arrays[layer]`` (N×D float32, L2-normalised, maybe a memmap)."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray
    classes: list[str]
    seconds: float  # extraction time (0 when everything came from the cache)
    cached_layers: list[str]


def _cache_key(bundle: ModelBundle, node: str, dataset: ImageSet, spatial: str, tta: str) -> str:
    desc = json.dumps({"arch": bundle.arch, "weights": bundle.weights_id, "node": node, "data": dataset.fingerprint,
                       "size": bundle.input_size, "mean": bundle.mean, "std": bundle.std, "channels": bundle.in_channels,
                       "spatial": spatial, "tta": tta, "v": 2}, sort_keys=True)
    return hashlib.sha1(desc.encode()).hexdigest()[:20]


def extract_features(bundle: ModelBundle, dataset: ImageSet, layers: list[str], *, batch_size: int = 32,
                     spatial: str = "avg", use_cache: bool = True, cache: str | os.PathLike | None = None,
                     num_workers: int = 0, progress: str | None = "extracting features",
                     input_transform=None, normalize: bool = True, tta: str = "none") -> Features:
    """Features of ``dataset`` at ``layers`` (aliases or node names) in one pass per missing layer set.

    ``input_transform`` (optional) maps a uint8 batch to another uint8 batch before the model's
    preprocessing (e.g. 8×8 UCI digits → MNIST geometry); it is part of the cache key through its name.
    """
    nodes = resolve_layers(bundle.arch, bundle.model, layers)
    folder = Path(cache) if cache else cache_dir("features")
    tname = getattr(input_transform, "__name__", "none") if input_transform else "none"
    if tta not in ("none", "flip"):
        raise CnnlabError(f"--tta {tta!r}: choose none or flip")
    keys = {name: _cache_key(bundle, node, dataset, spatial, tta) + ("" if tname == "none" else "-" + tname)
            for name, node in nodes.items()}
    arrays: dict[str, np.ndarray] = {}
    labels = None
    if use_cache:
        for name, key in keys.items():
            f, lf = folder / f"{key}.npy", folder / f"{key}.labels.npy"
            if f.exists() and lf.exists():
                arrays[name] = np.load(f, mmap_mode="r")
                labels = np.load(lf)
    missing = [n for n in nodes if n not in arrays]
    seconds = 0.0
    if missing:
        t0 = time.perf_counter()
        new, labels = _extract(bundle, dataset, {n: nodes[n] for n in missing}, batch_size=batch_size,
                               spatial=spatial, tta=tta, num_workers=num_workers, progress=progress,
                               input_transform=input_transform,
                               out_files={n: folder / f"{keys[n]}.npy" for n in missing} if use_cache else None,
                               labels_files={n: folder / f"{keys[n]}.labels.npy" for n in missing} if use_cache else None)
        arrays.update(new)
        seconds = time.perf_counter() - t0
    if normalize:  # the cache holds raw activations (a new head trains on those): normalise on the way out
        arrays = {n: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12) for n, a in arrays.items()}
    return Features({n: arrays[n] for n in nodes}, np.asarray(labels), list(dataset.classes), seconds,
                    [n for n in nodes if n not in missing])


@torch.inference_mode()
def _extract(bundle, dataset, nodes: dict[str, str], *, batch_size, spatial, tta, num_workers, progress, input_transform,
             out_files, labels_files):
    dev = bundle.device
    extractor = make_extractor(bundle.model, sorted(set(nodes.values())))
    n_max = len(dataset)
    tmp: dict[str, Path] = {}
    bufs: dict[str, np.ndarray] = {}
    ys: list[np.ndarray] = []
    row = 0
    try:
        for images, labels in dataset.batches(batch_size, num_workers=num_workers, progress=progress):
            if len(images) == 0:
                continue
            if input_transform is not None:
                images = input_transform(images)
            x = bundle.preprocess(images.to(dev, non_blocking=True))
            if tta == "flip":
                x = torch.cat([x, x.flip(-1)])
            outs = extractor(x)
            for name, node in nodes.items():
                feat = pool_features(outs[node], spatial, normalize=False)
                if tta == "flip":  # mean of the image's and its mirror's features
                    feat = 0.5 * (feat[:len(images)] + feat[len(images):])
                feat = feat.cpu().numpy()
                if name not in bufs:  # allocate once the feature size is known
                    shape = (n_max, feat.shape[1])
                    if out_files is not None:
                        out_files[name].parent.mkdir(parents=True, exist_ok=True)
                        tmp[name] = out_files[name].with_suffix(f".{os.getpid()}.tmp.npy")
                        bufs[name] = np.lib.format.open_memmap(tmp[name], mode="w+", dtype=np.float32, shape=shape)
                    else:
                        bufs[name] = np.empty(shape, dtype=np.float32)
                bufs[name][row:row + len(feat)] = feat
            ys.append(labels.numpy())
            row += len(images)
        labels = np.concatenate(ys) if ys else np.zeros(0, dtype=np.int64)
        result = {}
        for name, buf in bufs.items():
            if out_files is None:
                result[name] = buf[:row]
                continue
            if row < n_max:  # some files failed to decode: keep only the rows written
                final = np.lib.format.open_memmap(tmp[name].with_suffix(".trim.npy"), mode="w+", dtype=np.float32,
                                                  shape=(row, buf.shape[1]))
                for s in range(0, row, 4096):
                    final[s:s + 4096] = buf[s:s + 4096]
                final.flush()
                del buf, final
                os.replace(tmp[name].with_suffix(".trim.npy"), tmp[name])
            else:
                buf.flush()
                del buf
            np.save(labels_files[name].with_suffix(".tmp.npy"), labels)
            os.replace(labels_files[name].with_suffix(".tmp.npy"), labels_files[name])
            os.replace(tmp[name], out_files[name])  # features last: their presence means "complete"
            result[name] = np.load(out_files[name], mmap_mode="r")
        bufs.clear()
        return result, labels
    finally:
        for p in tmp.values():  # interrupted or failed: no half-written cache file survives
            for q in (p, p.with_suffix(".trim.npy")):
                if q.exists():
                    q.unlink()


def feature_info(feats: Features) -> dict:
    return {name: {"dim": int(a.shape[1]), "n": int(a.shape[0])} for name, a in feats.arrays.items()}


def describe_cache(folder: str | os.PathLike | None = None) -> str:
    folder = Path(folder) if folder else cache_dir("features")
    files = list(folder.glob("*.npy"))
    size = sum(f.stat().st_size for f in files)
    text = f"{len([f for f in files if not f.name.endswith('.labels.npy')])} cached feature arrays, {size / 1e6:.1f} MB in {folder}"
    atomic_write_text(folder / "README.txt", "cnnlab feature cache; safe to delete.\n")
    return text
