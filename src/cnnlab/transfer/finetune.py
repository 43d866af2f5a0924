"""Using the network itself as the classifier (A-Q10) and training it from scratch (A-Q5..Q7).

* ``new_head``: a new final layer trained with the backbone frozen. Since the frozen backbone is a
  fixed function in eval mode, training on its cached (un-normalised) penultimate activations is
  the same computation as running the whole network each epoch, at a fraction of the cost.
* ``finetune``: the whole network updated, starting from the pretrained weights, with a new head.
  BatchNorm layers stay in eval mode (their statistics come from the large source set; the shared
  MobileNetV2 even has folded statistics that batch statistics would destroy).
* ``from_scratch``: the same architecture, random weights, trained on the small set alone.

All three use the shared training loop and return per-epoch train/test accuracy for curves.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn

from cnnlab.models.registry import ModelBundle, build_model, replace_head
from cnnlab.train import TrainState, train_classifier


def freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def new_head(train_feats: np.ndarray, y_train, test_feats: np.ndarray, y_test, num_classes: int, *,
             epochs: int = 60, lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> TrainState:
    """A new ``nn.Linear`` head trained on frozen-backbone activations (N×D float arrays)."""
    torch.manual_seed(seed)
    Xtr = torch.tensor(np.asarray(train_feats), dtype=torch.float32)  # a copy: cached arrays are read-only
    Xte = torch.tensor(np.asarray(test_feats), dtype=torch.float32)
    head = nn.Linear(Xtr.shape[1], num_classes)
    mu, sd = Xtr.mean(0, keepdim=True), Xtr.std(0, keepdim=True).clamp_min(1e-6)  # fixed standardisation

    def standardise(x):
        return (x - mu) / sd

    return train_classifier(head, Xtr, torch.as_tensor(y_train), preprocess=standardise, epochs=epochs, lr=lr,
                            batch_size=64, weight_decay=weight_decay, seed=seed, test_images=Xte,
                            test_labels=torch.as_tensor(y_test), desc="new head (frozen backbone)")


def finetune(bundle: ModelBundle, train_images, y_train, test_images, y_test, num_classes: int, *,
             epochs: int = 5, lr: float = 1e-3, batch_size: int = 32, seed: int = 0, input_transform=None,
             checkpoint=None) -> TrainState:
    """Fine-tune a copy of the whole pretrained network with a new head (SGD, momentum 0.9)."""
    torch.manual_seed(seed)
    model = replace_head(copy.deepcopy(bundle.model), num_classes).to(bundle.device)
    pre = _with_transform(bundle.preprocess, input_transform)
    return train_classifier(model, train_images, torch.as_tensor(y_train), preprocess=pre, epochs=epochs, lr=lr,
                            batch_size=batch_size, optimizer="sgd", seed=seed, test_images=test_images,
                            test_labels=torch.as_tensor(y_test), train_mode=freeze_batchnorm, checkpoint=checkpoint,
                            desc="fine-tune (whole network)")


def from_scratch(arch: str, train_images, y_train, test_images, y_test, num_classes: int, *, epochs: int = 30,
                 lr: float = 1e-3, batch_size: int = 32, seed: int = 0, mean=None, std=None, input_transform=None,
                 device="cpu", checkpoint=None) -> TrainState:
    """The same architecture from random weights, trained on the small set only (A-Q5..Q7)."""
    torch.manual_seed(seed)
    bundle = build_model(arch, "NONE", num_classes=num_classes, mean=mean, std=std, device=device)
    pre = _with_transform(bundle.preprocess, input_transform)
    return train_classifier(bundle.model, train_images, torch.as_tensor(y_train), preprocess=pre, epochs=epochs,
                            lr=lr, batch_size=batch_size, seed=seed, test_images=test_images,
                            test_labels=torch.as_tensor(y_test), checkpoint=checkpoint, desc=f"{arch} from scratch")


def _with_transform(preprocess, input_transform):
    if input_transform is None:
        return preprocess
    return lambda x: preprocess(input_transform(x))
