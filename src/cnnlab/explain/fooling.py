"""The course's fooling image: x ← x + η·g/‖g‖₂, g the gradient of the *target* logit, η = 1, until
the network predicts the target (course hint: fewer than 100 iterations).

Each image stops at its own first success; an image still not fooled at ``max_iter`` is a reported
failure (``success`` False, ``iterations`` = the cap), never an endless loop. Many images and many
targets go through in batches: :func:`image_target_pairs` makes the N×K pairs.
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain.attacks import AttackResult, run_attack
from cnnlab.explain.inputs import bounds
from cnnlab.models import ModelBundle


def fooling_images(bundle: ModelBundle, images: torch.Tensor, targets, *, eta: float = 1.0, max_iter: int = 100,
                   clamp: bool = True, labels=None, batch_size: int = 32) -> AttackResult:
    """Fooling images of ``images`` (uint8 or normalised, one target class each). The step is taken
    in the model's normalised input space, as in the course; ``clamp`` keeps every iterate inside
    the per-channel pixel bounds (a valid image)."""
    if max_iter < 1 or not eta > 0:
        raise CnnlabError(f"fooling image: need max_iter ≥ 1 and eta > 0 (got {max_iter}, {eta})")

    def objective(logits, target):  # the raw target score, as the course asks (not a loss)
        return logits.gather(1, target.view(-1, 1)).sum()

    def update_for(x0):
        lo, hi = bounds(bundle, x0)

        def update(x, g, _rows):
            x = x + eta * g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            return torch.maximum(torch.minimum(x, hi), lo) if clamp else x

        return update

    return run_attack(bundle, images, method="fooling", targets=targets, labels=labels, objective=objective,
                      update_for=update_for, steps=max_iter, early_stop=True, batch_size=batch_size)


def random_targets(labels: torch.Tensor, k: int, num_classes: int, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(N, k) distinct target classes per image, each different from its label."""
    if k > num_classes - 1:
        raise CnnlabError(f"--targets-per-image {k}: at most {num_classes - 1} classes differ from the label")
    g = generator or torch.Generator().manual_seed(0)
    out = torch.empty(len(labels), k, dtype=torch.long)
    for i, y in enumerate(labels.tolist()):
        perm = torch.randperm(num_classes - 1, generator=g)[:k]
        out[i] = perm + (perm >= y).long()  # skip the label
    return out


def image_target_pairs(images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor):
    """Images (N,…) × targets (N,K) → (images repeated N·K, labels N·K, targets N·K, image index N·K)."""
    n, k = targets.shape
    index = torch.arange(n).repeat_interleave(k)
    return images[index], labels[index], targets.reshape(-1), index
