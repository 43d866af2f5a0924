"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps").

A map that explains the *model* must change when the model's weights are destroyed. Cascading
randomisation re-initialises the parametrised layers from the top (logits) down, one more at a
time, and compares each image's map on the randomised copy with its map on the trained model by
Spearman rank correlation (and SSIM of the maps scaled to [0,1]). High correlation after
randomisation means the map shows the input (edges), not what the network learnt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from cnnlab.explain.inputs import model_input
from cnnlab.explain.saliency import METHODS
from cnnlab.models import ModelBundle


def parametrised_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own parameters and can re-initialise them, in registration order
    (input → output for sequential networks)."""
    return [n for n, m in model.named_modules()
            if hasattr(m, "reset_parameters") and any(True for _ in m.parameters(recurse=False))]


def _reinit(module: nn.Module, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):  # the module's own init, from our seed, global RNG untouched
        torch.manual_seed(seed)
        module.reset_parameters()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps (flattened); NaN when one is constant."""
    from scipy.stats import spearmanr

    a, b = a.flatten().double().numpy(), b.flatten().double().numpy()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def map_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM of two maps, each scaled to [0,1]."""
    from cnnlab.explain.metrics import ssim

    def unit(m):
        m = m.double().numpy()
        r = np.ptp(m)
        return (m - m.min()) / r if r > 0 else np.zeros_like(m)

    return ssim(unit(a), unit(b))


@dataclass
class SanityResult:
    rows: list[dict]  # one per randomisation step: layers randomised, mean/min Spearman, mean SSIM
    maps: dict[str, torch.Tensor] = field(default_factory=dict)  # step label → (N, H, W)
    targets: torch.Tensor | None = None


def model_randomization_check(bundle: ModelBundle, images: torch.Tensor, targets=None, *,
                              method: str | Callable = "saliency", steps: int = 5,
                              generator: torch.Generator | None = None, **method_kw) -> SanityResult:
    """Cascading randomisation from the logits down; ``steps`` checkpoints spaced geometrically from
    1 layer to all layers. The model in ``bundle`` is not modified (a deep copy is randomised)."""
    fn = METHODS[method] if isinstance(method, str) else method
    g = generator or torch.Generator().manual_seed(0)
    x = model_input(bundle, images)
    if targets is None:  # fixed on the trained model, as in the paper
        from cnnlab.explain.saliency import predict_proba

        targets = predict_proba(bundle, x).argmax(1)
    base = fn(bundle, x, targets, **method_kw)
    result = SanityResult(rows=[], maps={"trained": base}, targets=torch.as_tensor(targets))
    layers = parametrised_layers(bundle.model)[::-1]  # top (logits) first
    n = len(layers)
    marks = sorted({int(round(v)) for v in np.geomspace(1, n, num=min(steps, n))}) if n else []
    rand = copy.deepcopy(bundle)  # the bundle's model is never touched
    rand_modules = dict(rand.model.named_modules())
    done = 0
    for k in marks:
        for name in layers[done:k]:
            _reinit(rand_modules[name], int(torch.randint(0, 2**31 - 1, (1,), generator=g)))
        done = k
        maps = fn(rand, x, targets, **method_kw)
        rho = [spearman(a, b) for a, b in zip(base, maps)]
        ss = [map_ssim(a, b) for a, b in zip(base, maps)]
        label = f"top {k}" if k < n else "all"
        result.maps[label] = maps
        result.rows.append({"randomised": label, "layers": k, "down_to": layers[k - 1],
                            "spearman_mean": float(np.nanmean(rho)) if not np.all(np.isnan(rho)) else float("nan"),
                            "spearman_min": float(np.nanmin(rho)) if not np.all(np.isnan(rho)) else float("nan"),
                            "ssim_mean": float(np.mean(ss))})
    return result
