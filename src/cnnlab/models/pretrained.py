"""Small networks that cnnlab pretrains itself, once, and caches.

``digit_classifier`` is the digit CNN used as Part A's pretrained source network (embedded
default), Part B's model to explain and attack (embedded default) and Part D's judge of generated
digits. It is trained with the shared loop on ``mnist-embedded`` (offline) or the full ``mnist``
and cached in ``cache_dir("pretrained")`` keyed by dataset, epochs and seed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from cnnlab.models.registry import ModelBundle, build_model
from cnnlab.runs import cache_dir, read_json, save_torch, write_json

log = logging.getLogger("cnnlab")


def _digit_classifier_files(dataset: str, epochs: int, seed: int, arch: str = "digitnet") -> tuple[str, Path, Path]:
    key = f"{arch}-{dataset}-e{epochs}-s{seed}"
    folder = cache_dir("pretrained")
    return key, folder / f"{key}.pth", folder / f"{key}.json"


def digit_classifier_cached(dataset: str = "mnist-embedded", *, epochs: int = 8, seed: int = 0,
                            arch: str = "digitnet") -> bool:
    """Whether :func:`digit_classifier` with these settings loads from the cache (no training)."""
    _, wpath, mpath = _digit_classifier_files(dataset, epochs, seed, arch)
    return wpath.exists() and mpath.exists()


def digit_classifier(dataset: str = "mnist-embedded", *, data_root=None, epochs: int = 8, seed: int = 0,
                     device: torch.device | str = "cpu", size: int = 28, arch: str = "digitnet") -> ModelBundle:
    """A trained ``arch`` (``digitnet``, or ``lenet5`` for Part D's second judge), cached.
    ``bundle.extra`` holds its train/test accuracy and history."""
    from cnnlab.data import load_dataset
    from cnnlab.train import accuracy, train_classifier

    key, wpath, mpath = _digit_classifier_files(dataset, epochs, seed, arch)
    folder = wpath.parent
    if wpath.exists() and mpath.exists():
        bundle = build_model(arch, str(wpath), device=device)
        bundle.extra.update(read_json(mpath))
        return bundle
    log.info("training the digit classifier %s (cached in %s)", key, folder)
    train = load_dataset(dataset, "train", data_root=data_root)
    test = load_dataset(dataset, "test", data_root=data_root)
    torch.manual_seed(seed)
    bundle = build_model(arch, "NONE", device=device)
    state = train_classifier(bundle.model, train.images, train.labels, preprocess=bundle.preprocess, epochs=epochs,
                             lr=1e-3, batch_size=64, seed=seed, desc=f"digit classifier ({dataset})")
    info = {"dataset": dataset, "epochs": epochs, "seed": seed, "arch": arch, "history": state.history,
            "test_acc": accuracy(bundle.model, test.images, test.labels, bundle.preprocess)}
    save_torch(wpath, {k: v.cpu() for k, v in bundle.model.state_dict().items()})
    write_json(mpath, info)
    bundle.extra.update(info)
    bundle.weights, bundle.weights_id = str(wpath), key
    bundle.model.eval()
    return bundle
