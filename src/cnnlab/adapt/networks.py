"""The course's DANN network for 28×28 digits (registered as ``dann_mnist``).

features  : conv(3→32, 5×5, pad 2)–ReLU–maxpool2 → conv(32→48, 5×5, pad 2)–ReLU–maxpool2 → 48·7·7 = 2352
            (computed as conv–maxpool–ReLU: max and ReLU commute, so the function and its gradients are
            the course's, and the ReLU and its backward touch a 4× smaller tensor: ~15% of a CPU step)
classifier: 2352–100–ReLU–100–ReLU–10                (label predictor)
domain    : GRL → 2352–100–ReLU–1                     (domain classifier, logit of "source")

``input_norm=True`` puts an instance normalisation (every image, every channel: zero mean, unit
variance; no parameters) in front of the features, as VADA's networks have (Shu et al. 2018): it
removes each image's colour and contrast, which is most of what tells MNIST-M from MNIST.

``forward(x)`` returns the class logits only, so the network is an ordinary classifier for
``predict``/``accuracy`` and the registry; DANN training calls ``features``, ``classify`` and
``domain_logits`` separately.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.adapt.grl import grad_reverse
from cnnlab.models.registry import register_model

# MNIST statistics, used for both domains (MNIST replicated to 3 channels), as in the course.
DANN_MEAN, DANN_STD = (0.13066,) * 3, (0.30811,) * 3
DIGITS = [str(i) for i in range(10)]
FEATURE_DIM = 2352


class DANNNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_norm: bool = False):
        super().__init__()
        self.input_norm = input_norm
        self.features = nn.Sequential(
            *([nn.InstanceNorm2d(in_channels)] if input_norm else []),
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(inplace=True),  # 32×14×14
            nn.Conv2d(32, 48, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(inplace=True),  # 48×7×7
            nn.Flatten(),  # 2352
        )
        self.classifier = nn.Sequential(
            nn.Linear(FEATURE_DIM, 100), nn.ReLU(inplace=True),
            nn.Linear(100, 100), nn.ReLU(inplace=True),
            nn.Linear(100, num_classes),
        )
        self.domain = nn.Sequential(nn.Linear(FEATURE_DIM, 100), nn.ReLU(inplace=True), nn.Linear(100, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def dann_outputs(self, x: torch.Tensor, n_source: int, lambda_: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass over a source+target batch: class logits of the first ``n_source`` rows and domain
        logits of all rows (the DANN training step's forward, which DDP wraps under torchrun)."""
        f = self.features(x)
        return self.classifier(f[:n_source]), self.domain_logits(f, lambda_)

    def vada_outputs(self, x: torch.Tensor, lambda_: float | None, confusion: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """VADA's main pass over a source+target batch: class and domain logits of every row and, with
        ``confusion``, the same rows' logits from a frozen copy of the domain head (else None).

        ``confusion`` (Shu et al.'s code): the head learns from detached features, and the features
        learn from the frozen head with flipped labels, a loss whose gradient vanishes once the head
        is fooled; through the GRL (``lambda_``) the features keep pushing the head to be confidently
        wrong instead."""
        f = self.features(x)
        if not confusion:
            return self.classifier(f), self.domain_logits(f, lambda_), None
        frozen = {k: v.detach() for k, v in self.domain.named_parameters()}
        return (self.classifier(f), self.domain_logits(f.detach(), None),
                torch.func.functional_call(self.domain, frozen, (f,)).squeeze(1))

    def domain_logits(self, feats: torch.Tensor, lambda_: float | None) -> torch.Tensor:
        """(B, 2352) → (B,) logits of "source". ``lambda_=None``: no GRL (C-Q1)."""
        if lambda_ is not None:
            feats = grad_reverse(feats, lambda_)
        return self.domain(feats).squeeze(1)


@register_model("dann_mnist", mean=DANN_MEAN, std=DANN_STD, input_size=28, in_channels=3, categories=DIGITS,
                help="the course's DANN network (MNIST → MNIST-M): 2352-d features, label and domain heads")
def dann_mnist(num_classes: int = 10) -> nn.Module:
    return DANNNet(num_classes)
