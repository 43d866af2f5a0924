"""Judging generated digits in a digit classifier's space (no eyeballing only).

The judge is cnnlab's cached digit classifier (:func:`cnnlab.models.pretrained.digit_classifier`).
From one forward pass over a batch of images it gives

* its penultimate features (128-d) → the **Fréchet distance** between the Gaussians fitted to the
  features of generated and of real test images (the FID recipe of Heusel et al. 2017, with a
  digit network in place of Inception): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½);
* its predicted classes → the **class histogram** and its **entropy** (log₂ 10 = 3.32 bits when
  every digit is equally frequent; mode collapse shows as low entropy);
* its softmax maximum → the **mean confidence** (blurry non-digits get low confidence);
* for a conditional G, the **conditional accuracy**: how often the class asked for is the class
  the judge sees.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from cnnlab.models.registry import ModelBundle

DIGIT_CLASSES = [str(i) for i in range(10)]


# --------------------------------------------------------------------------- Fréchet distance
def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of N×D features, in float64."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need N×D features with N ≥ 2, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).

    Tr((Σ₁Σ₂)^½) is computed as Tr((Σ₁^½ Σ₂ Σ₁^½)^½): the same eigenvalues, but a symmetric PSD
    matrix, so a symmetric eigen-decomposition is exact and stable (no complex sqrtm residue).
    """
    s1_half = _psd_sqrt(np.atleast_2d(sigma1))
    m = s1_half @ np.atleast_2d(sigma2) @ s1_half
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = np.atleast_1d(mu1) - np.atleast_1d(mu2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def class_entropy(hist: np.ndarray) -> float:
    """Entropy in bits of a histogram of predicted classes."""
    p = np.asarray(hist, dtype=np.float64)
    p = p / max(p.sum(), 1e-12)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: no "-0.0" for a single class


# --------------------------------------------------------------------------- the judge network
@dataclass
class Judge:
    """A digit classifier bundle plus a hook on its penultimate layer."""

    bundle: ModelBundle
    layer: str  # module name whose output is the feature vector

    @property
    def classes(self) -> list[str]:
        return list(self.bundle.categories or DIGIT_CLASSES)

    @property
    def test_acc(self) -> float | None:
        return self.bundle.extra.get("test_acc")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """``images``: uint8, or float in [−1, 1] (a generator's Tanh range), B×C×H×W, any size and
        channel count → (penultimate features B×D, class probabilities B×K), float32 on CPU."""
        model = self.bundle.model
        model.eval()
        module = model.get_submodule(self.layer)
        grabbed: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda m, i, o: grabbed.append(o.detach().flatten(1).clone()))
        feats, probs = [], []
        dev = self.bundle.device
        try:
            for s in range(0, len(images), batch_size):
                x = images[s:s + batch_size]
                x = x if x.dtype == torch.uint8 else (x.float().clamp(-1, 1) + 1) / 2  # → [0, 1]
                logits = model(self.bundle.preprocess(x.to(dev)))  # resized to 28×28, grey, normalised
                probs.append(torch.softmax(logits.float(), 1).cpu())
                feats.append(grabbed.pop().float().cpu())
        finally:
            handle.remove()
        if not feats:
            return torch.zeros(0, 0), torch.zeros(0, len(self.classes))
        return torch.cat(feats), torch.cat(probs)


def judge_from_bundle(bundle: ModelBundle) -> Judge:
    from cnnlab.models.layers import layer_aliases

    return Judge(bundle, layer_aliases(bundle.arch, bundle.model)["penultimate"])


@functools.lru_cache(maxsize=8)
def _cached_judge(dataset: str, data_root: str | None, epochs: int, arch: str, seed: int) -> Judge:
    from cnnlab.models.pretrained import digit_classifier

    return judge_from_bundle(digit_classifier(dataset, data_root=data_root, epochs=epochs, arch=arch, seed=seed))


# The second judge: another architecture and another training seed than the first (digitnet, seed 0).
SECOND_JUDGE = {"arch": "lenet5", "seed": 1}


def load_judge(dataset: str = "mnist-embedded", *, data_root=None, epochs: int = 8, second: bool = False) -> Judge:
    """The cached digit classifier trained on ``dataset`` (``mnist-embedded`` offline, or ``mnist``)
    for ``epochs`` epochs (8: the one every part shares; fewer only for smoke tests). ``second``:
    the independent second judge (:data:`SECOND_JUDGE`)."""
    arch, seed = (SECOND_JUDGE["arch"], SECOND_JUDGE["seed"]) if second else ("digitnet", 0)
    return _cached_judge(dataset, str(data_root) if data_root is not None else None, epochs, arch, seed)


# --------------------------------------------------------------------------- the metrics
@dataclass
class RealReference:
    """Feature statistics of real images, computed once per (dataset, size, judge)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def real_reference(judge: Judge, images: torch.Tensor) -> RealReference:
    feats, _ = judge(images)
    mu, sigma = gaussian_stats(feats)
    return RealReference(mu, sigma, len(feats))


def judge_metrics(judge: Judge, images: torch.Tensor, reference: RealReference | None = None,
                  labels: torch.Tensor | None = None, *, digits: bool = True) -> dict:
    """Metrics of a batch of images (generated, or real for a floor): Fréchet distance to the
    reference, class histogram + entropy, mean confidence and, with ``labels`` (the classes asked
    of a conditional G), the conditional accuracy. ``digits=False`` (not a digit dataset): the
    class-based numbers mean nothing and are left out; the distance stays (in digit features)."""
    feats, probs = judge(images)
    out: dict = {"n": int(len(images))}
    if reference is not None and len(feats) >= 2:
        mu, sigma = gaussian_stats(feats)
        out["frechet"] = frechet_distance(mu, sigma, reference.mu, reference.sigma)
    if digits:
        conf, pred = probs.max(1)
        hist = np.bincount(pred.numpy(), minlength=probs.shape[1])
        out.update(class_hist=hist.tolist(), class_entropy=class_entropy(hist),
                   max_entropy=math.log2(probs.shape[1]), confidence=float(conf.mean()))
        if labels is not None:
            out["cond_acc"] = float((pred == labels.cpu()).float().mean())
    return out
