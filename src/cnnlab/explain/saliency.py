"""Saliency maps (Simonyan et al. 2014), SmoothGrad (Smilkov et al. 2017) and Grad-CAM (Selvaraju et al. 2017).

The course's saliency map: the gradient of the raw class score (the logit, not the loss) with respect
to the input image, absolute value, maximum over the colour channels: one H×W map per image.
All three verbs take any classifier bundle and uint8 images (or already normalised tensors), work in
batches, and leave the model as they found it (see :mod:`cnnlab.explain.hooks`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import capture_output, untouched
from cnnlab.explain.inputs import as_targets, batched, check_classes, model_input
from cnnlab.models import ModelBundle, resolve_layers
from cnnlab.models.layers import family, output_module


def score_gradient(model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None):
    """∂ s_y / ∂x for each image (s_y the raw logit of its target; the predicted class when ``targets``
    is None). Returns (gradient B×C×H×W, logits B×K, targets B)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)  # B×K
    if targets is None:
        targets = logits.detach().argmax(1)
    score = logits.gather(1, targets.view(-1, 1)).sum()  # images are independent in eval mode
    (g,) = torch.autograd.grad(score, x)
    return g, logits.detach(), targets


def _prepare(bundle: ModelBundle, images, targets):
    x = model_input(bundle, images)
    t = None if targets is None else as_targets(targets, len(x), x.device)
    if t is not None and bundle.categories:
        check_classes(bundle, t, len(bundle.categories))
    return x, t


def saliency_maps(bundle: ModelBundle, images: torch.Tensor, targets=None, *, batch_size: int = 32) -> torch.Tensor:
    """The course's saliency maps: |∂ s_y / ∂x| maxed over channels → (N, H, W) on the CPU.
    ``targets``: one class per image (an int for all); None uses each image's predicted class."""
    x, t = _prepare(bundle, images, targets)
    out = []
    with untouched(bundle.model) as model:
        for sl in batched(len(x), batch_size):
            g, _, _ = score_gradient(model, x[sl], None if t is None else t[sl])
            out.append(g.abs().amax(dim=1).cpu())  # B×H×W
    return torch.cat(out)


def smoothgrad(bundle: ModelBundle, images: torch.Tensor, targets=None, *, samples: int = 25, noise: float = 0.15,
               batch_size: int = 32, generator: torch.Generator | None = None) -> torch.Tensor:
    """SmoothGrad of the course's map: the mean of ``samples`` saliency maps of ``x + N(0, σ²)`` with
    σ = ``noise`` · (max − min of the image). Targets are fixed on the clean image (its prediction
    when None). Returns (N, H, W)."""
    if samples < 1:
        raise CnnlabError(f"--samples {samples}: SmoothGrad needs at least 1 noisy sample")
    x, t = _prepare(bundle, images, targets)
    g = generator or torch.Generator().manual_seed(0)
    out = []
    with untouched(bundle.model) as model:
        if t is None:
            with torch.no_grad():
                t = torch.cat([model(x[sl]).argmax(1) for sl in batched(len(x), batch_size)])
        per_batch = max(1, batch_size // samples)  # images per pass; each brings `samples` noisy copies
        for sl in batched(len(x), per_batch):
            xb = x[sl]
            sigma = noise * (xb.amax(dim=(1, 2, 3)) - xb.amin(dim=(1, 2, 3)))  # per image
            eps = torch.randn((samples,) + tuple(xb.shape), generator=g).to(xb.device)  # S×B×C×H×W
            noisy = (xb.unsqueeze(0) + eps * sigma.view(1, -1, 1, 1, 1)).flatten(0, 1)  # (S·B)×C×H×W
            grad, _, _ = score_gradient(model, noisy, t[sl].repeat(samples))
            maps = grad.abs().amax(dim=1).view(samples, len(xb), *grad.shape[-2:])
            out.append(maps.mean(0).cpu())
    return torch.cat(out)


# Grad-CAM's default layer per family: the last convolutional feature map before global pooling.
GRADCAM_LAYER = {"vgg": "features.29", "squeezenet": "features.12", "mobilenet_v2": "features.18",
                 "resnet": "layer4", "resnext": "layer4", "wide_resnet": "layer4", "alexnet": "features.11",
                 "densenet": "features", "digitnet": "features.4", "efficientnet": "features",
                 "convnext": "features", "regnet": "trunk_output"}


def gradcam_layer(bundle: ModelBundle, layer: str | None = None) -> str:
    """The module Grad-CAM reads: ``layer`` (a module name or an alias of ``cnnlab layers``), or the
    family default, or the last Conv2d."""
    modules = dict(bundle.model.named_modules())
    if layer is None:
        name = GRADCAM_LAYER.get(family(bundle.arch))
        if name in modules:
            return name
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise CnnlabError(f"{bundle.arch} has no Conv2d layer; Grad-CAM needs a convolutional feature map")
        return convs[-1]
    if layer in modules and layer:
        return layer
    # an alias or node name → the module whose output that node is (fire9 → features.12.cat → features.12)
    node = resolve_layers(bundle.arch, bundle.model, [layer], flag="--layer")[layer]
    module = output_module(bundle.model, node)
    if module is None:
        raise CnnlabError(f"--layer {layer!r} is the graph node {node!r}, not the output of a module; Grad-CAM "
                          "needs a module whose output is a feature map (e.g. a conv block); `cnnlab layers "
                          f"--arch {bundle.arch}` lists the names")
    return module


def grad_cam(bundle: ModelBundle, images: torch.Tensor, targets=None, *, layer: str | None = None,
             batch_size: int = 32) -> torch.Tensor:
    """Grad-CAM: ReLU(Σ_k α_k A_k), α_k the spatial mean of ∂ s_y / ∂A_k, A the output of ``layer``;
    upsampled bilinearly to the input size → (N, H, W), not normalised."""
    x, t = _prepare(bundle, images, targets)
    name = gradcam_layer(bundle, layer)
    out = []
    with untouched(bundle.model) as model, capture_output(model, name) as cap:
        for sl in batched(len(x), batch_size):
            xb = x[sl].detach().requires_grad_(True)  # keeps a graph even for a frozen model
            logits = model(xb)
            tb = logits.detach().argmax(1) if t is None else t[sl]
            A = cap.output  # B×C×h×w, the layer's own values (see capture_output)
            if A is None or A.dim() != 4:
                shape = None if A is None else tuple(A.shape)
                raise CnnlabError(f"--layer {name!r} gives an output of shape {shape}, not a B×C×H×W feature map; "
                                  "pick a convolutional layer")
            (dA,) = torch.autograd.grad(logits.gather(1, tb.view(-1, 1)).sum(), A)
            alpha = dA.mean(dim=(2, 3), keepdim=True)  # B×C×1×1
            cam = F.relu((alpha * A.detach()).sum(1, keepdim=True))  # B×1×h×w
            cam = F.interpolate(cam, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
            out.append(cam[:, 0].cpu())
    return torch.cat(out)


def predict_proba(bundle: ModelBundle, images: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """Softmax probabilities (N, K) on the CPU."""
    x = model_input(bundle, images)
    with untouched(bundle.model) as model, torch.no_grad():
        return torch.cat([model(x[sl]).softmax(1).cpu() for sl in batched(len(x), batch_size)])


METHODS = {"saliency": saliency_maps, "smoothgrad": smoothgrad, "gradcam": grad_cam}
