"""Class visualisation (Simonyan et al. 2014; regularisers of Yosinski et al. 2015), the course's way.

Gradient ascent on s_y(I) − λ‖I‖² over the normalised image I, starting from N(0,1) noise or from a
real image (``init``), with the course's implicit regularisers:

- random jitter: a circular roll of up to ``max_jitter`` px before the step, undone after it;
- a Gaussian blur (σ = 0.5) every ``blur_every`` iterations;
- each channel clamped to the normalised range of [0,1] pixels.

Course defaults: λ = 1e-3, learning rate 5, 200 iterations, blur every 10, jitter 16, snapshots every
25 iterations. The step is plain gradient ascent, I ← I + lr·∇. Several classes run as one batch
(the images are independent in eval mode), and ``learning_rate``/``l2_reg`` may differ per image,
which is how the B-Q9 sweep runs in one pass. Randomness (initial noise, jitter) comes from a
``torch.Generator``, so a run is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torchvision.transforms.functional import gaussian_blur

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import untouched
from cnnlab.explain.inputs import as_targets, bounds, check_classes, model_input
from cnnlab.models import ModelBundle
from cnnlab.progress import progress_bar

COURSE_DEFAULTS = {"l2_reg": 1e-3, "learning_rate": 5.0, "num_iterations": 200, "blur_every": 10,
                   "blur_sigma": 0.5, "max_jitter": 16, "snapshot_every": 25}


def jitter(x: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    """Circular shift by ``ox`` px along W and ``oy`` px along H (B×C×H×W)."""
    return torch.roll(x, shifts=(oy, ox), dims=(2, 3))


def unjitter(x: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    return torch.roll(x, shifts=(-oy, -ox), dims=(2, 3))


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur, kernel radius ⌈4σ⌉ like scipy's gaussian_filter (reflected borders)."""
    k = 2 * max(1, math.ceil(4 * sigma)) + 1
    return gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])


@dataclass
class ClassVisualization:
    images: torch.Tensor  # (B,C,H,W) final images, normalised model input (CPU)
    targets: torch.Tensor  # (B,)
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (iteration, B×C×H×W)
    history: list[dict] = field(default_factory=list)  # per snapshot: iteration, image, score, p_target
    settings: dict = field(default_factory=dict)

    def at(self, iteration: int) -> torch.Tensor:
        for it, imgs in self.snapshots:
            if it == iteration:
                return imgs
        raise KeyError(f"no snapshot at iteration {iteration}; have {[it for it, _ in self.snapshots]}")


def _per_image(v, n: int, device, what: str) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise CnnlabError(f"{what}: give one value or one per class ({n}); got {t.numel()}")
    return t.to(device).view(-1, 1, 1, 1)


def class_visualization(bundle: ModelBundle, targets, *, init: torch.Tensor | None = None,
                        l2_reg: float | Sequence[float] = 1e-3, learning_rate: float | Sequence[float] = 5.0,
                        num_iterations: int = 200, blur_every: int | None = 10, blur_sigma: float = 0.5,
                        max_jitter: int | None = None, clamp: bool = True, snapshot_every: int = 25,
                        snapshot_at: Sequence[int] = (), generator: torch.Generator | None = None,
                        progress: bool = True) -> ClassVisualization:
    """Images that the model scores highly as ``targets`` (one class per image). ``init``: uint8
    images or normalised tensors to start from (B-Q10), else N(0,1) noise of the model's input size.
    ``max_jitter`` None: the course's 16 px at 224×224, scaled to the model's input size (2 px for
    28×28 digits, where 16 px would roll most of the image away); 0 turns jitter off.
    Snapshots after iteration 1, every ``snapshot_every`` and the last (plus ``snapshot_at``)."""
    if num_iterations < 1:
        raise CnnlabError(f"--iterations {num_iterations}: must be at least 1")
    g = generator or torch.Generator().manual_seed(0)
    dev = bundle.device
    if init is None:
        n = torch.as_tensor(targets).reshape(-1).numel()
        shape = (n, bundle.in_channels, bundle.input_size, bundle.input_size)
        img = torch.randn(shape, generator=g).to(dev)  # the course: randn in normalised space
    else:
        img = model_input(bundle, init).clone()
    n = len(img)
    y = as_targets(targets, n, dev)
    if bundle.categories:
        check_classes(bundle, y, len(bundle.categories))
    lr = _per_image(learning_rate, n, dev, "learning_rate")
    lam = _per_image(l2_reg, n, dev, "l2_reg")
    if max_jitter is None:
        max_jitter = max(1, round(COURSE_DEFAULTS["max_jitter"] * img.shape[-1] / 224))
    lo, hi = bounds(bundle, img)
    marks = {1, num_iterations} | {t for t in range(snapshot_every, num_iterations + 1, snapshot_every)} | set(snapshot_at)
    out = ClassVisualization(images=img, targets=y.cpu(),
                             settings={"l2_reg": lam.flatten().tolist(), "learning_rate": lr.flatten().tolist(),
                                       "num_iterations": num_iterations, "blur_every": blur_every,
                                       "blur_sigma": blur_sigma, "max_jitter": max_jitter, "clamp": clamp})
    with untouched(bundle.model) as model:
        for t in progress_bar(range(num_iterations), desc="class visualisation", disable=not progress):
            ox, oy = (torch.randint(0, max_jitter + 1, (2,), generator=g).tolist() if max_jitter else (0, 0))
            x = jitter(img, ox, oy).requires_grad_(True)
            logits = model(x)
            score = logits.gather(1, y.view(-1, 1))  # B×1
            objective = score.sum() - (lam.flatten() * x.pow(2).flatten(1).sum(1)).sum()
            (grad,) = torch.autograd.grad(objective, x)
            img = unjitter((x + lr * grad).detach(), ox, oy)  # gradient ascent, then undo the roll
            if clamp:
                img = torch.maximum(torch.minimum(img, hi), lo)
            if blur_every and t % blur_every == 0:
                img = blur(img, blur_sigma)
            if t + 1 in marks:
                # score and confidence are those of the image before this step (the forward just done)
                out.snapshots.append((t + 1, img.cpu()))
                p = logits.detach().softmax(1).gather(1, y.view(-1, 1))[:, 0]
                for b in range(n):
                    out.history.append({"iteration": t + 1, "image": b, "target": int(y[b]),
                                        "score": float(score[b].detach()), "p_target": float(p[b])})
    out.images = img.cpu()
    return out


def final_scores(bundle: ModelBundle, vis: ClassVisualization) -> list[dict]:
    """Score, confidence and predicted class of each final image (one forward pass)."""
    with untouched(bundle.model) as model, torch.no_grad():
        logits = model(vis.images.to(bundle.device)).cpu()
    p = logits.softmax(1)
    return [{"target": int(t), "score": float(logits[b, t]), "p_target": float(p[b, t]),
             "pred": int(logits[b].argmax())} for b, t in enumerate(vis.targets.tolist())]


def sweep(bundle: ModelBundle, target: int, *, iterations: Sequence[int] = (25, 100, 200, 400),
          learning_rates: Sequence[float] = (1.0, 5.0, 25.0), l2_regs: Sequence[float] = (1e-4, 1e-3, 1e-2),
          num_iterations: int = 200, init: torch.Tensor | None = None, generator: torch.Generator | None = None,
          **kw) -> dict:
    """B-Q9: vary the number of iterations, the learning rate and the L2 weight, one at a time around
    the course defaults, from the same initial noise. One batched run: the iteration row comes from
    snapshots of the default setting (a run of n iterations is the first n steps of a longer one);
    the learning-rate and λ rows are taken after ``num_iterations``."""
    d_lr, d_l2 = COURSE_DEFAULTS["learning_rate"], COURSE_DEFAULTS["l2_reg"]
    settings = [("iterations", d_lr, d_l2)] + [("learning_rate", v, d_l2) for v in learning_rates] + \
               [("l2_reg", d_lr, v) for v in l2_regs]
    g = generator or torch.Generator().manual_seed(0)
    if init is None:
        init = torch.randn((1, bundle.in_channels, bundle.input_size, bundle.input_size), generator=g)
    start = model_input(bundle, init)[:1].expand(len(settings), -1, -1, -1)
    n_iter = max(max(iterations), num_iterations)
    vis = class_visualization(bundle, [target] * len(settings), init=start,
                              learning_rate=[s[1] for s in settings], l2_reg=[s[2] for s in settings],
                              num_iterations=n_iter, snapshot_at=tuple(iterations) + (num_iterations,),
                              generator=g, **kw)
    default_iters = num_iterations
    grid: dict[str, list[tuple[str, torch.Tensor]]] = {"iterations": [], "learning_rate": [], "l2_reg": []}
    for it in iterations:
        grid["iterations"].append((f"{it} it", vis.at(it)[0]))
    for b, (kind, lr, l2) in enumerate(settings[1:], start=1):
        value = lr if kind == "learning_rate" else l2
        grid[kind].append((f"{'lr' if kind == 'learning_rate' else 'λ'} {value:g}", vis.at(default_iters)[b]))
    return {"grid": grid, "vis": vis, "settings": settings}
