"""Looking inside a network (A-Q1..Q4): parameter table, last layer, top-k predictions, conv1 maps."""

from __future__ import annotations

import torch
import torch.nn as nn

from cnnlab.models.registry import ModelBundle


def parameter_table(model: nn.Module, input_size: int | None = None, in_channels: int = 3) -> list[dict]:
    """One row per layer that owns parameters: name, type, output shape (when ``input_size`` is
    given), parameter count. The last row is the total. VGG16 totals 138,357,544."""
    shapes: dict[str, tuple] = {}
    if input_size:
        hooks = []
        for name, m in model.named_modules():
            if any(True for _ in m.parameters(recurse=False)):
                hooks.append(m.register_forward_hook(
                    lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.zeros(1, in_channels, input_size, input_size, device=next(model.parameters()).device))
        finally:
            for h in hooks:
                h.remove()
            model.train(was)
    rows, total = [], 0
    for name, m in model.named_modules():
        n = sum(p.numel() for p in m.parameters(recurse=False))
        if n == 0:
            continue
        total += n
        row = {"layer": name, "type": type(m).__name__, "parameters": n}
        if isinstance(m, nn.Linear):
            row["shape"] = f"{m.in_features}→{m.out_features}"
        elif isinstance(m, nn.Conv2d):
            row["shape"] = f"{m.in_channels}→{m.out_channels}, {m.kernel_size[0]}×{m.kernel_size[1]}"
        if name in shapes:
            row["output"] = "×".join(map(str, shapes[name]))
        rows.append(row)
    rows.append({"layer": "TOTAL", "type": "", "parameters": total})
    return rows


def last_layer(model: nn.Module) -> dict:
    """Size and meaning of the classification layer (A-Q2)."""
    name, layer = None, None
    for n, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            name, layer = n, m
    out = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return {"layer": name, "type": type(layer).__name__, "outputs": int(out),
            "parameters": sum(p.numel() for p in layer.parameters())}


@torch.no_grad()
def top_k(bundle: ModelBundle, images: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) per uint8 image (A-Q3)."""
    probs = torch.softmax(bundle.model(bundle.preprocess(images.to(bundle.device))).float(), dim=1).cpu()
    p, i = probs.topk(min(k, probs.shape[1]), dim=1)
    names = bundle.categories or [str(j) for j in range(probs.shape[1])]
    return [[(names[j], float(pp)) for pp, j in zip(pr.tolist(), ir.tolist())] for pr, ir in zip(p, i)]


@torch.no_grad()
def first_conv_maps(bundle: ModelBundle, image: torch.Tensor) -> tuple[str, torch.Tensor]:
    """Activation maps after the first convolution (and its ReLU when it follows), C×H×W (A-Q4)."""
    first_name, first = next((n, m) for n, m in bundle.model.named_modules() if isinstance(m, nn.Conv2d))
    captured = {}
    h = first.register_forward_hook(lambda m, i, o: captured.__setitem__("out", o.detach().clone()))
    try:
        bundle.model(bundle.preprocess(image[None].to(bundle.device)))
    finally:
        h.remove()
    return first_name, captured["out"][0].clamp_min(0).cpu()  # the ReLU that follows the course's conv1
