"""Running a classifier for input gradients without changing it.

Every verb of :mod:`cnnlab.explain` goes through :func:`untouched`: the model is put in eval mode,
its parameters frozen, for the call and handed back exactly as it came (each module's train/eval
flag, every parameter's ``requires_grad``, no hook left behind). Gradients are taken with ``torch.autograd.grad`` with
respect to the input only, so parameter ``.grad`` fields are never written.

:func:`capture_output` records a named layer's output and lets the gradient reach it even when the
next module is an in-place ReLU (VGG16, SqueezeNet): the hook returns a *clone* to the rest of the
network, so the in-place op overwrites the clone while the recorded tensor keeps the layer's own
values and its place in the autograd graph.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError


def hook_count(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks registered on any module of ``model``."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        n += len(getattr(m, "_backward_pre_hooks", {}))
    return n


@contextlib.contextmanager
def untouched(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters (``requires_grad`` False: gradients reach the input only, and
    autograd records nothing for the weights) inside the block; train flags and ``requires_grad``
    restored after it."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for m, t in modes:
            m.training = t
        for p, r in flags:
            p.requires_grad_(r)


class LayerCapture:
    """Holds the output of one layer from the last forward pass (``.output``, B×C×H×W)."""

    output: torch.Tensor | None = None


@contextlib.contextmanager
def capture_output(model: nn.Module, module_name: str) -> Iterator[LayerCapture]:
    """Record the output of submodule ``module_name`` during forward passes inside the block."""
    modules = dict(model.named_modules())
    if module_name not in modules:
        raise CnnlabError(f"--layer {module_name!r} is not a module of this model (Grad-CAM needs a module "
                          "whose output is a B×C×H×W feature map, e.g. features.12 for SqueezeNet 1.1's fire9); "
                          "`cnnlab layers --arch ARCH` lists the names")
    cap = LayerCapture()

    def hook(_mod, _inp, out):
        if not isinstance(out, torch.Tensor):
            raise CnnlabError(f"--layer {module_name!r} returns a {type(out).__name__}, not a tensor; pick a layer "
                              "whose output is a feature map")
        cap.output = out
        return out.clone()  # later in-place ops (ReLU(inplace=True)) modify the clone, not `out`

    handle = modules[module_name].register_forward_hook(hook)
    try:
        yield cap
    finally:
        handle.remove()
