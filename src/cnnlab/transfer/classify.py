"""Classifying CNN features with a linear SVM (Part A).

The layer and C are chosen by stratified cross-validation on the TRAIN split only. Test accuracy is
computed for every (layer, C) so the report can show the whole grid, but it never takes part in the
choice. Optional PCA before the SVM measures the time/accuracy trade-off (A-Q11).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

DEFAULT_CS = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1000.0)


def linear_svc(C: float, seed: int = 0, dual: bool | str = "auto") -> LinearSVC:
    # The course's classifier: one-vs-rest LinearSVC. More iterations than sklearn's default: at
    # large C on normalised features the default 1000 often stops short.
    return LinearSVC(C=C, max_iter=5000, random_state=seed, dual=dual)


def span_coordinates(Xtr: np.ndarray, Xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact coordinates of train and test features in the span of the training rows (n ≤ d).

    The dual SVM solver sees the data only through inner products, and its weight vector lies in
    the span of the training rows (plus the intercept term, kept as liblinear's own extra feature).
    With X_trᵀ = QR, the n-d coordinates X Q keep every inner product with a training row, so
    every fit (on any subset of the rows: the CV folds) and every prediction is the same as on the
    d-d features, at n/d of the cost per solver pass: 1500 vs 25088 for VGG16's pool5 on 15 Scene.

    R is computed as the Cholesky factor of the Gram matrix X_tr X_trᵀ = RᵀR and the test
    coordinates as (X_te X_trᵀ) R⁻¹: two matrix products and a triangular solve, much cheaper than
    Householder QR of the d×n matrix (docs/checks/part_a.md). Duplicate or nearly dependent
    training rows make the Gram matrix (nearly) singular: then it is QR, which handles them.
    """
    X = np.asarray(Xtr, dtype=np.float64)
    Xt = np.asarray(Xte, dtype=np.float64)
    try:
        lower = np.linalg.cholesky(X @ X.T)  # Rᵀ: lower triangular, the train coordinates
        diag = np.abs(np.diag(lower))
        if diag.min() > 1e-6 * diag.max():  # well conditioned: the solve below loses nothing
            from scipy.linalg import solve_triangular

            return lower, solve_triangular(lower, (Xt @ X.T).T, lower=True).T
    except np.linalg.LinAlgError:
        pass
    q, r = np.linalg.qr(X.T)  # d×n, n×n
    return r.T, Xt @ q


def combine(arrays: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """Concatenate layers (each already L2-normalised) and re-normalise: ``relu6+relu7``."""
    if len(names) == 1:
        return np.asarray(arrays[names[0]])
    x = np.concatenate([np.asarray(arrays[n]) for n in names], axis=1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class SVMStudy:
    rows: list[dict]  # one per (layer, C): cv_acc (train split), test_acc, fit seconds
    layer: str  # the selection (by CV only)
    C: float
    cv_acc: float
    test_acc: float
    confusion: np.ndarray
    per_class: list[dict]
    predictions: np.ndarray
    extra: dict = field(default_factory=dict)


def _folds(y: np.ndarray, cv: int, seed: int) -> StratifiedKFold:
    k = int(max(2, min(cv, np.bincount(y).min())))
    return StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)


def svm_study(train: dict[str, np.ndarray], test: dict[str, np.ndarray], y_train, y_test, classes: list[str], *,
              layers: list[str] | None = None, Cs=DEFAULT_CS, cv: int = 5, seed: int = 0, n_jobs: int | None = None,
              project: bool = True) -> SVMStudy:
    """Sweep ``layers`` (names of ``train``/``test``, or ``a+b`` combinations) × ``Cs``.

    ``project``: when a layer has more dimensions than training images, fit in the exact span
    coordinates of the training rows (:func:`span_coordinates`; same results, less time).
    ``n_jobs``: threads for the fits (default: one per core). All of a layer's fits (each C's CV folds
    and its refit on the whole train split) go to one pool, so no core waits for a C's last fold or
    its refit; liblinear releases the GIL, and threads share the features without copies."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    layers = layers or list(train)
    folds = list(_folds(y_train, cv, seed).split(np.zeros(len(y_train)), y_train))
    n_jobs = n_jobs or os.cpu_count() or 1
    rows, best = [], None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for layer in layers:
            names = layer.split("+")
            Xtr, Xte = combine(train, names), combine(test, names)
            dim = int(Xtr.shape[1])
            dual = len(Xtr) < dim  # what dual="auto" picks on the original features: keep it for the projection
            t_proj = time.perf_counter()
            if project and dim > 1.25 * len(Xtr):
                Xtr, Xte = span_coordinates(Xtr, Xte)
                Xtr = sparse.csr_matrix(Xtr)  # lower triangular: half the entries are zeros liblinear can skip
            t_proj = time.perf_counter() - t_proj  # charged to the layer's first C

            def fit(C, fold):  # fold None: the refit on the whole train split, predicting the test split
                t0 = time.perf_counter()
                if fold is None:
                    out = linear_svc(C, seed, dual).fit(Xtr, y_train).predict(Xte)
                else:
                    tr, va = folds[fold]
                    out = float((linear_svc(C, seed, dual).fit(Xtr[tr], y_train[tr]).predict(Xtr[va])
                                 == y_train[va]).mean())
                return out, time.perf_counter() - t0

            jobs = [(C, f) for C in Cs for f in [*range(len(folds)), None]]
            done = dict(zip(jobs, Parallel(n_jobs=min(n_jobs, len(jobs)), prefer="threads")(
                delayed(fit)(C, f) for C, f in jobs)))
            for C in Cs:
                cv_acc = float(np.mean([done[C, f][0] for f in range(len(folds))]))
                pred = done[C, None][0]
                test_acc = float((pred == y_test).mean())
                fit_s = sum(done[C, f][1] for f in [*range(len(folds)), None])
                rows.append({"layer": layer, "dim": dim, "C": C, "cv_acc": cv_acc, "test_acc": test_acc,
                             "seconds": round(fit_s + t_proj, 3)})  # its folds' and refit's fit times, summed
                t_proj = 0.0
                if best is None or cv_acc > best[0] + 1e-12:
                    best = (cv_acc, layer, C, pred, test_acc)
    cv_acc, layer, C, pred, test_acc = best
    cm = confusion_matrix(y_test, pred, labels=list(range(len(classes))))
    per_class = [{"class": c, "n_test": int(cm[i].sum()),
                  "accuracy": float(cm[i, i] / cm[i].sum()) if cm[i].sum() else float("nan")}
                 for i, c in enumerate(classes)]
    return SVMStudy(rows, layer, C, cv_acc, test_acc, cm, per_class, pred)


def pca_study(Xtr: np.ndarray, Xte: np.ndarray, y_train, y_test, *, C: float, dims=(8, 16, 32, 64, 128, 256, 512),
              seed: int = 0) -> list[dict]:
    """Accuracy and time of PCA(d) + LinearSVC(C) against no PCA (A-Q11)."""
    from sklearn.decomposition import PCA

    Xtr, Xte = np.asarray(Xtr), np.asarray(Xte)
    rows = []
    full_dim = Xtr.shape[1]
    usable = [d for d in dims if d < min(full_dim, len(Xtr))] + [None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for d in usable:
            model = linear_svc(C, seed) if d is None else make_pipeline(PCA(d, random_state=seed), linear_svc(C, seed))
            t0 = time.perf_counter()
            model.fit(Xtr, y_train)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            acc = float((model.predict(Xte) == np.asarray(y_test)).mean())
            rows.append({"pca_dim": d if d is not None else f"none ({full_dim})", "fit_seconds": round(fit_s, 4),
                         "predict_seconds": round(time.perf_counter() - t0, 4), "test_acc": acc})
    return rows
