"""cnnlab's own small networks (registered in the model registry by name).

``digitnet``: a small CNN for 28×28 digits. Part A pretrains it on the embedded MNIST subset and
transfers its features to few UCI digits; Part B explains and attacks it; Part D uses it as the
judge of generated digits (Fréchet distance, class histogram).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.models.registry import register_model

MNIST_MEAN, MNIST_STD = (0.13066,), (0.30811,)
DIGITS = [str(i) for i in range(10)]


class DigitNet(nn.Module):
    """conv(1→32,3)–ReLU–pool → conv(32→64,3)–ReLU–pool → fc 3136→128 → ReLU → dropout → fc 128→10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 32×14×14
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 64×7×7
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(2 * width * 7 * 7, 128), nn.ReLU(inplace=True), nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


@register_model("digitnet", mean=MNIST_MEAN, std=MNIST_STD, input_size=28, in_channels=1, categories=DIGITS,
                help="small CNN for 28×28 digits (cnnlab's embedded default)")
def digitnet(num_classes: int = 10) -> nn.Module:
    return DigitNet(num_classes)


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling: conv(1→6,5,pad 2)–pool → conv(6→16,5)–pool
    → fc 400→120 → fc 120→84 → fc 84→10. Part D's second judge: another architecture than digitnet,
    trained with another seed, so that a Fréchet-distance gain is not one network's artefact."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 6×14×14
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 16×5×5
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(400, 120), nn.ReLU(inplace=True), nn.Linear(120, 84),
                                        nn.ReLU(inplace=True), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


@register_model("lenet5", mean=MNIST_MEAN, std=MNIST_STD, input_size=28, in_channels=1, categories=DIGITS,
                help="LeNet-5 for 28×28 digits (Part D's second judge)")
def lenet5(num_classes: int = 10) -> nn.Module:
    return LeNet5(num_classes)
