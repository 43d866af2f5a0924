"""The transfer study behind ``cnnlab transfer`` and Part A of the lab.

Features from several layers (one extraction, cached) → LinearSVC with layer and C chosen by CV on
the train split → test accuracy, confusion matrix, per-class accuracy; PCA before the SVM (A-Q11);
the network as classifier: new head on the frozen backbone, whole-network fine-tuning (A-Q10); the
same architecture trained from scratch on the small set (A-Q5..Q7).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab import distributed
from cnnlab.data import load_dataset
from cnnlab.data.imageset import ImageSet
from cnnlab.errors import CnnlabError
from cnnlab.models.layers import default_layer, layer_aliases
from cnnlab.models.registry import ModelBundle
from cnnlab.runs import Run
from cnnlab.transfer import figures
from cnnlab.transfer.classify import DEFAULT_CS, combine, pca_study, svm_study
from cnnlab.transfer.features import extract_features
from cnnlab.transfer.finetune import finetune, from_scratch, new_head

log = logging.getLogger("cnnlab")


@dataclass(frozen=True)
class TransferConfig:
    """The transfer study's settings, checked when built (one clear error naming the option)."""

    dataset: str = "15scene"
    arch: str = "vgg16"
    weights: str = "DEFAULT"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layers: tuple[str, ...] = ()  # empty: the model's default layer + neighbours
    combos: tuple[str, ...] = ()  # e.g. ("relu6+relu7",): concatenated layers
    Cs: tuple[float, ...] = tuple(DEFAULT_CS)
    cv: int = 5
    per_class: int | None = None  # keep only this many labelled training images per class
    pca: bool = True
    head_epochs: int = 60
    finetune_epochs: int = 0
    scratch_epochs: int = 0
    finetune_lr: float = 1e-3
    scratch_lr: float = 1e-3
    batch_size: int = 32
    tta: str = "none"  # "flip": average each image's features with its mirror image's
    spatial: str = "avg"  # how a feature map becomes a vector: avg, spp (whole + 2×2 quadrants), flatten
    compile: bool = False  # torch.compile the extractor (features.CompiledExtractor): for thousands of images
    precision: str = "auto"  # extraction: auto, fp32 or bf16 (see cnnlab.precision)
    input_transform: str | None = None  # "digits_as_mnist" for 8×8 UCI digits into a 28×28 MNIST network
    data_root: str | None = None
    seed: int = 0

    def __post_init__(self):
        for name in ("layers", "combos", "Cs"):  # lists are accepted, stored as tuples (hashable, immutable)
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.Cs or min(self.Cs) <= 0:
            raise CnnlabError(f"--C {','.join(f'{c:g}' for c in self.Cs)}: every C must be > 0 (and one given at least)")
        if self.cv < 2:
            raise CnnlabError(f"--cv {self.cv}: cross-validation needs at least 2 folds")
        if self.batch_size < 1:
            raise CnnlabError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.per_class is not None and self.per_class < 2:
            raise CnnlabError(f"--per-class {self.per_class}: cross-validation needs at least 2 images per class")
        for name in ("head_epochs", "finetune_epochs", "scratch_epochs"):
            if getattr(self, name) < 0:
                raise CnnlabError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be 0 (skip) or more")
        if self.tta not in ("none", "flip"):
            raise CnnlabError(f"--tta {self.tta!r}: choose none or flip")
        if self.input_transform is not None and self.input_transform not in INPUT_TRANSFORMS:
            raise CnnlabError(f"--input-transform {self.input_transform!r} unknown; choose from "
                              f"{', '.join(INPUT_TRANSFORMS)}")


def digits_as_mnist(images: torch.Tensor) -> torch.Tensor:
    """8×8 UCI digits (digit fills the frame) → 28×28 with MNIST's geometry (digit in a 20×20 box)."""
    x = F.interpolate(images.float(), size=(20, 20), mode="bilinear", align_corners=False)
    return F.pad(x, (4, 4, 4, 4)).round().clamp(0, 255).to(torch.uint8)


INPUT_TRANSFORMS = {"digits_as_mnist": digits_as_mnist}


def few_per_class(ds: ImageSet, per_class: int, seed: int) -> ImageSet:
    """A seeded subset with at most ``per_class`` images of each class."""
    rng = np.random.default_rng(seed)
    y = ds.labels.numpy()
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]))
    return ds.subset(keep, name=f"{ds.name}-{per_class}pc-s{seed}")


def check_splits(dataset: str, train: ImageSet, test: ImageSet) -> None:
    """What the SVM study needs, said before any feature is extracted: two classes in the train split,
    two training images in each of them (the smallest cross-validation has 2 folds), a test split."""
    if len(train) == 0 or len(test) == 0:
        raise CnnlabError(f"dataset {dataset!r} has an empty {'train' if len(train) == 0 else 'test'} split; "
                          "give it images in both (for a folder: DIR/<class>/*.jpg with several images per class)")
    counts = np.bincount(train.labels.numpy(), minlength=len(train.classes))
    present = [(c, int(n)) for c, n in zip(train.classes, counts) if n > 0]
    if len(present) < 2:
        only = f"only class {present[0][0]!r}" if present else "no labelled image"
        raise CnnlabError(f"dataset {dataset!r}: the train split holds {only}; a classifier needs at least 2 "
                          "classes (for a folder: one sub-folder per class, DIR/<class>/*.jpg)")
    if short := [f"{c!r} ({n})" for c, n in present if n < 2]:
        raise CnnlabError(f"dataset {dataset!r}: class(es) {', '.join(short)} have fewer than 2 training images; "
                          "cross-validation needs at least 2 per class (add images, or use --per-class 2 or more)")


def default_layers(arch: str, model) -> list[str]:
    """The model's default layer plus the course's comparison layers when the model has them."""
    aliases = layer_aliases(arch, model)
    wanted = [default_layer(arch)] + [a for a in ("relu6", "pool5", "block15", "block16", "block17", "layer3",
                                                  "conv", "fc1", "logits") if a in aliases]
    out, seen = [], set()
    for w in wanted:  # one name per node (aliases may share one)
        if w in aliases and aliases[w] not in seen:
            out.append(w)
            seen.add(aliases[w])
    return out


def run_transfer(cfg: TransferConfig, bundle: ModelBundle, run: Run) -> dict:
    """The whole study into ``run``; returns the numbers the report needs."""
    tf = INPUT_TRANSFORMS.get(cfg.input_transform) if cfg.input_transform else None
    train = load_dataset(cfg.dataset, "train", data_root=cfg.data_root, size=bundle.input_size)
    test = load_dataset(cfg.dataset, "test", data_root=cfg.data_root, size=bundle.input_size)
    if cfg.per_class:
        train = few_per_class(train.materialize(), cfg.per_class, cfg.seed)
    check_splits(cfg.dataset, train, test)
    layers = list(cfg.layers) or default_layers(cfg.arch, bundle.model)
    t0 = time.perf_counter()
    kw = dict(batch_size=cfg.batch_size, input_transform=tf, tta=cfg.tta, precision=cfg.precision,
              spatial=cfg.spatial, compile=cfg.compile)
    ftr = extract_features(bundle, train, layers, progress="features (train)", **kw)
    fte = extract_features(bundle, test, layers, progress="features (test)", **kw)
    extract_s = time.perf_counter() - t0
    skipped = [{"file": s.path, "reason": s.reason} for s in list(train.skipped) + list(test.skipped)]
    if skipped:
        run.write_table("skipped_files", skipped)
        log.warning("%d files skipped (see %s)", len(skipped), run.root / "skipped_files.csv")

    # under torchrun the ranks shared the extraction; the SVM stage runs once, on rank 0
    t0 = time.perf_counter()
    study = distributed.run_once(svm_study, ftr.arrays, fte.arrays, ftr.labels, fte.labels, train.classes,
                                 layers=[*layers, *cfg.combos], Cs=list(cfg.Cs), cv=cfg.cv, seed=cfg.seed)
    t_svm = time.perf_counter() - t0  # wall time (the rows' seconds are fit times, summed over threads)
    run.write_table("svm_grid", study.rows)
    run.write_table("per_class", study.per_class)
    figs = {"svm_grid": run.save_figure(figures.accuracy_grid(study.rows, (study.layer, study.C)), "svm_grid"),
            "confusion": run.save_figure(figures.confusion(study.confusion, train.classes,
                                                           f"Confusion matrix: {study.layer}, C={study.C:g}"),
                                         "confusion")}
    results = {"dataset": cfg.dataset, "arch": cfg.arch, "weights": bundle.weights, "n_train": len(ftr.labels),
               "n_test": len(fte.labels), "classes": train.classes, "layers": layers,
               "dims": {n: int(a.shape[1]) for n, a in ftr.arrays.items()},
               "selected": {"layer": study.layer, "C": study.C, "cv_acc": study.cv_acc, "test_acc": study.test_acc},
               "extract_seconds": round(extract_s, 2), "svm_sweep_seconds": round(t_svm, 2),
               "skipped_files": len(skipped), "figures": figs, "svm_rows": study.rows,
               "per_class_rows": study.per_class}
    course_row = next((r for r in study.rows if r["layer"] == layers[0] and r["C"] == 1.0), None)
    if course_row:
        results["course_default"] = {"layer": layers[0], "C": 1.0, "test_acc": course_row["test_acc"]}

    if cfg.pca:
        names = study.layer.split("+")
        rows = distributed.run_once(pca_study, combine(ftr.arrays, names), combine(fte.arrays, names), ftr.labels,
                                    fte.labels, C=study.C, seed=cfg.seed)
        run.write_table("pca", rows)
        results["pca"] = rows

    curves: dict[str, list[dict]] = {}
    if cfg.head_epochs:
        raw_tr = extract_features(bundle, train, ["penultimate"], normalize=False, input_transform=tf, tta=cfg.tta, precision=cfg.precision,
                                  progress=None)
        raw_te = extract_features(bundle, test, ["penultimate"], normalize=False, input_transform=tf, tta=cfg.tta, precision=cfg.precision,
                                  progress=None)
        st = new_head(raw_tr.arrays["penultimate"], raw_tr.labels, raw_te.arrays["penultimate"], raw_te.labels,
                      len(train.classes), epochs=cfg.head_epochs, seed=cfg.seed)
        curves["new head, frozen backbone"] = st.history
        results["new_head"] = {"test_acc": st.history[-1]["test_acc"], "epochs": cfg.head_epochs}
    mem_train = train.materialize() if (cfg.finetune_epochs or cfg.scratch_epochs) else None
    mem_test = test.materialize() if (cfg.finetune_epochs or cfg.scratch_epochs) else None
    if cfg.finetune_epochs:
        st = finetune(bundle, mem_train.images, mem_train.labels, mem_test.images, mem_test.labels,
                      len(train.classes), epochs=cfg.finetune_epochs, lr=cfg.finetune_lr, seed=cfg.seed,
                      input_transform=tf, batch_size=cfg.batch_size)
        curves["fine-tuned whole network"] = st.history
        results["finetune"] = {"test_acc": st.history[-1]["test_acc"], "epochs": cfg.finetune_epochs}
    if cfg.scratch_epochs:
        st = from_scratch(cfg.arch, mem_train.images, mem_train.labels, mem_test.images, mem_test.labels,
                          len(train.classes), epochs=cfg.scratch_epochs, lr=cfg.scratch_lr, seed=cfg.seed,
                          mean=bundle.mean, std=bundle.std, input_transform=tf, device=bundle.device,
                          batch_size=cfg.batch_size)
        curves["from scratch"] = st.history
        results["scratch"] = {"test_acc": st.history[-1]["test_acc"], "best_test_acc": max(h["test_acc"] for h in st.history),
                              "final_train_acc": st.history[-1]["train_acc"], "epochs": cfg.scratch_epochs}
    if curves:
        rows = [{"method": m, **h} for m, hist in curves.items() for h in hist]
        run.write_table("curves", rows)
        ref = {f"SVM on {study.layer} (C={study.C:g})": study.test_acc}
        figs["curves"] = run.save_figure(figures.training_curves(curves, ref), "curves")
    run.log_metrics(transfer=results)
    return results


def learning_curve(bundle: ModelBundle, cfg: TransferConfig, run: Run, per_class_values: list[int],
                   scratch_epochs: int) -> list[dict]:
    """Test accuracy vs labelled images per class (each ≥ 2, for CV): transfer (features + SVM)
    against the same network trained from scratch."""
    tf = INPUT_TRANSFORMS.get(cfg.input_transform) if cfg.input_transform else None
    full = load_dataset(cfg.dataset, "train", data_root=cfg.data_root, size=bundle.input_size).materialize()
    test = load_dataset(cfg.dataset, "test", data_root=cfg.data_root, size=bundle.input_size).materialize()
    layer = cfg.layers[0] if cfg.layers else default_layer(cfg.arch)
    fte = extract_features(bundle, test, [layer], input_transform=tf, progress=None)
    rows = []
    for k in per_class_values:
        sub = few_per_class(full, k, cfg.seed)
        ftr = extract_features(bundle, sub, [layer], input_transform=tf, progress=None)
        s = distributed.run_once(svm_study, ftr.arrays, fte.arrays, ftr.labels, fte.labels, full.classes,
                                 layers=[layer], Cs=list(cfg.Cs), cv=min(cfg.cv, k), seed=cfg.seed)
        rows.append({"method": f"pretrained features + SVM ({layer})", "per_class": k, "test_acc": s.test_acc})
        # the same number of optimisation steps whatever the subset size: small sets get more epochs
        epochs = max(scratch_epochs, -(-scratch_epochs * 32 * 10 // len(sub)))
        st = from_scratch(cfg.arch, sub.images, sub.labels, test.images, test.labels, len(full.classes),
                          epochs=min(epochs, 400), seed=cfg.seed, mean=bundle.mean, std=bundle.std, input_transform=tf,
                          device=bundle.device)
        rows.append({"method": "same network from scratch", "per_class": k, "test_acc": st.history[-1]["test_acc"]})
    run.write_table("learning_curve", rows)
    return rows
