"""Adversarial attacks: FGSM (Goodfellow et al. 2015), I-FGSM (Kurakin et al. 2017) and PGD
(Madry et al. 2018) in L∞ and L2, targeted or untargeted.

ε and the step α are in pixel units of [0, 1] images (8/255 is "8 grey levels"). The attacks work on
the model's normalised input, so each channel gets ε/std_c, and every iterate is clamped to the
per-channel bounds ``bundle.pixel_bounds``: the result is always a valid image. L2 norms are
measured in pixel units too (‖δ·std‖₂).

All attacks, and the course's fooling image (:mod:`cnnlab.explain.fooling`), share one loop,
:func:`iterate`: forward the images still running, record who succeeded, step the others. It stops
an image at its first success when ``early_stop`` (the default; this is what "iterations to
success" counts) and never runs past its cap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import untouched
from cnnlab.explain.inputs import as_targets, batched, bounds, channel_stats, check_classes, model_input
from cnnlab.models import ModelBundle
from cnnlab.progress import progress_bar

log = logging.getLogger("cnnlab")


@dataclass
class AttackResult:
    """Adversarial images and what happened to each of them (all tensors on the CPU)."""

    method: str
    images: torch.Tensor  # (N,C,H,W) adversarial, normalised model input
    originals: torch.Tensor  # (N,C,H,W) normalised model input
    labels: torch.Tensor  # (N,) true (or clean-predicted) class, -1 when unknown
    targets: torch.Tensor | None  # (N,) target class of a targeted attack, else None
    success: torch.Tensor  # (N,) bool: final image fools the model
    iterations: torch.Tensor  # (N,) steps until the first success; the cap for failures
    logits: torch.Tensor  # (N,K) on the final images
    cap: int  # the step budget

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)

    def __len__(self) -> int:
        return len(self.images)


Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits B×K, goal B) → scalar to ascend
# (x, grad, rows of the batch being stepped, None = all) → next x; built per batch by an update_for(x0).
# It may work in place on x and on grad (both belong to the loop) and returns the next x.
Update = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def iterate(model: nn.Module, x0: torch.Tensor, goal: torch.Tensor, *, targeted: bool, objective: Objective,
            update: Update, steps: int, early_stop: bool = True, start: torch.Tensor | None = None):
    """The shared attack loop on one batch. ``goal`` is the target class (targeted) or the class to
    leave (untargeted). Returns (final x, success, iterations, final logits).

    Per step: one forward, the gradient of the objective with respect to the input only
    (``torch.autograd.grad``; :func:`untouched` froze the parameters), one update in place. The
    only bookkeeping is the first step at which each image fooled the model (an argmax of the
    logits already computed); with ``early_stop`` that also retires the image."""
    x = (x0 if start is None else start).detach().clone()  # owned by the loop: stepped in place
    n = len(x)
    first = torch.full((n,), -1, dtype=torch.long, device=x.device)  # first step at which it fooled
    if not early_stop:  # every image takes every step: no gathers, no retirement
        for it in range(steps):
            x.requires_grad_(True)
            logits = model(x)
            pred = logits.detach().argmax(1)
            first.masked_fill_(((pred == goal) if targeted else (pred != goal)) & (first < 0), it)
            (g,) = torch.autograd.grad(objective(logits, goal), x)
            x = update(x.requires_grad_(False), g, None)
        with torch.no_grad():  # the last pass only decides success
            logits_out = model(x)
        pred = logits_out.argmax(1)
        success = pred == goal if targeted else pred != goal
        first.masked_fill_(success & (first < 0), steps)
    else:
        logits_out = None
        idx = torch.arange(n, device=x.device)
        for it in range(steps + 1):
            full, last = len(idx) == n, it == steps
            xa = x if full else x[idx]  # no gather while all still run
            with torch.set_grad_enabled(not last):  # the last pass only decides success
                logits = model(xa.requires_grad_(not last))
            if logits_out is None:
                logits_out = torch.empty(n, logits.shape[1], dtype=logits.dtype, device=x.device)
            logits_out[idx] = logits.detach()
            pred = logits.detach().argmax(1)
            fooled = pred == goal[idx] if targeted else pred != goal[idx]
            first[idx[fooled & (first[idx] < 0)]] = it
            if last:
                xa.requires_grad_(False)
                break
            (g,) = torch.autograd.grad(objective(logits, goal[idx]), xa)
            xa.requires_grad_(False)
            if not fooled.any():  # everyone steps
                x = update(xa, g, None) if full else x.index_copy_(0, idx, update(xa, g, idx))
                continue
            go = ~fooled
            sel = idx[go]
            if len(sel) == 0:
                break
            x.index_copy_(0, sel, update(xa[go], g[go], sel))
            idx = sel
        pred = logits_out.argmax(1)
        success = pred == goal if targeted else pred != goal
    iterations = torch.where(success & (first >= 0), first, torch.full_like(first, steps))
    return x.detach(), success, iterations, logits_out


def run_attack(bundle: ModelBundle, images: torch.Tensor, *, method: str, targets=None, labels=None,
               objective: Objective, update_for: Callable, steps: int, early_stop: bool, batch_size: int,
               start_for: Callable | None = None) -> AttackResult:
    """Batches, targets/labels, model hygiene and the result; ``update_for(x)`` builds the update
    for a batch (it needs the per-channel bounds on the batch's device)."""
    x_all = model_input(bundle, images)
    n = len(x_all)
    targeted = targets is not None
    out = {k: [] for k in ("x", "success", "iterations", "logits")}
    with untouched(bundle.model) as model:
        if labels is None:  # untargeted attacks move away from the clean prediction
            with torch.no_grad():
                labels = torch.cat([model(x_all[sl]).argmax(1) for sl in batched(n, batch_size)])
        labels = as_targets(labels, n, x_all.device)
        tgt = as_targets(targets, n, x_all.device) if targeted else None
        if tgt is not None and bundle.categories:
            check_classes(bundle, tgt, len(bundle.categories))
        goal = tgt if targeted else labels
        chunks = list(batched(n, batch_size))
        for sl in progress_bar(chunks, desc=method, total=len(chunks), disable=len(chunks) < 2):
            x0 = x_all[sl]
            start = start_for(x0) if start_for else None
            x, s, it, lg = iterate(model, x0, goal[sl], targeted=targeted, objective=objective,
                                   update=update_for(x0), steps=steps, early_stop=early_stop, start=start)
            for k, v in zip(out, (x, s, it, lg)):
                out[k].append(v.detach().cpu())
    res = AttackResult(method, torch.cat(out["x"]), x_all.cpu(), labels.cpu(), None if tgt is None else tgt.cpu(),
                       torch.cat(out["success"]), torch.cat(out["iterations"]), torch.cat(out["logits"]), steps)
    if (~res.success).any():
        log.info("%s: %d of %d images not fooled within %d steps", method, int((~res.success).sum()), n, steps)
    return res


# --------------------------------------------------------------------------- the loss and the steps
def _ce_objective(targeted: bool) -> Objective:
    # targeted: descend the cross-entropy of the target; untargeted: ascend the one of the label
    sign = -1.0 if targeted else 1.0
    return lambda logits, goal: sign * F.cross_entropy(logits, goal, reduction="sum")


def _l2_pixel_norm(d: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """‖d·std‖₂ per image (B,1,1,1): the size of a normalised-space change in pixel units."""
    return (d * std).flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _linf_update(bundle: ModelBundle, eps: float, alpha: float):
    def make(x0):
        lo, hi = bounds(bundle, x0)
        _, std = channel_stats(bundle, x0)
        e, a = eps / std, alpha / std  # per channel, in normalised units
        # the ε-ball and the valid pixels are both boxes: projecting on one then the other is a clamp
        # to their intersection, computed once per batch
        low, high = torch.maximum(x0 - e, lo), torch.minimum(x0 + e, hi)

        def update(x, g, rows):  # in place: x += α·sign(g), clamped to the box
            l, h = (low, high) if rows is None else (low[rows], high[rows])
            return x.addcmul_(g.sign_(), a).clamp_(l, h)

        return update

    return make


def _l2_update(bundle: ModelBundle, eps: float, alpha: float):
    def make(x0):
        lo, hi = bounds(bundle, x0)
        _, std = channel_stats(bundle, x0)

        def update(x, g, rows):
            x_orig = x0 if rows is None else x0[rows]
            gp = g / std  # ∂L/∂pixels = ∂L/∂x / std
            step = alpha * gp / gp.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)  # pixel units
            d = x + step / std - x_orig
            n = _l2_pixel_norm(d, std)
            d = d * torch.clamp(eps / n.clamp_min(1e-12), max=1.0)  # project on the ε-ball
            return torch.maximum(torch.minimum(x_orig + d, hi), lo)

        return update

    return make


def _check(eps: float, alpha: float, steps: int, norm: str) -> None:
    if norm not in ("linf", "l2"):
        raise CnnlabError(f"--norm {norm!r}: choose linf or l2")
    if not eps > 0 or not alpha > 0:
        raise CnnlabError(f"--eps {eps} / --alpha {alpha}: both must be > 0 (pixel units of [0,1] images, e.g. 8/255)")
    if steps < 1:
        raise CnnlabError(f"--steps {steps}: must be at least 1")


# --------------------------------------------------------------------------- the verbs
def fgsm(bundle: ModelBundle, images: torch.Tensor, *, eps: float = 8 / 255, targets=None, labels=None,
         batch_size: int = 64) -> AttackResult:
    """Fast gradient sign method: one step of size ε (pixel units) along the sign of the gradient of
    the cross-entropy (away from ``labels``, or towards ``targets`` when given)."""
    _check(eps, eps, 1, "linf")
    return run_attack(bundle, images, method="fgsm", targets=targets, labels=labels,
                      objective=_ce_objective(targets is not None), update_for=_linf_update(bundle, eps, eps),
                      steps=1, early_stop=False, batch_size=batch_size)  # one step, always taken


def ifgsm(bundle: ModelBundle, images: torch.Tensor, *, eps: float = 8 / 255, alpha: float = 2 / 255,
          steps: int = 10, targets=None, labels=None, early_stop: bool = True, batch_size: int = 64) -> AttackResult:
    """Iterative FGSM (basic iterative method): ``steps`` sign steps of α, projected on the L∞ ε-ball."""
    _check(eps, alpha, steps, "linf")
    return run_attack(bundle, images, method="ifgsm", targets=targets, labels=labels,
                      objective=_ce_objective(targets is not None), update_for=_linf_update(bundle, eps, alpha),
                      steps=steps, early_stop=early_stop, batch_size=batch_size)


def pgd(bundle: ModelBundle, images: torch.Tensor, *, eps: float | None = None, alpha: float | None = None,
        steps: int = 10, norm: str = "linf", targets=None, labels=None, random_start: bool = True,
        early_stop: bool = True, batch_size: int = 64, generator: torch.Generator | None = None) -> AttackResult:
    """Projected gradient descent from a random point of the ε-ball. L∞: sign steps of α (defaults
    ε = 8/255, α = 2/255); L2: normalised-gradient steps of α (defaults ε = 1, α = 0.2), pixel units."""
    eps = eps if eps is not None else (8 / 255 if norm == "linf" else 1.0)
    alpha = alpha if alpha is not None else (2 / 255 if norm == "linf" else 0.2)
    _check(eps, alpha, steps, norm)
    g = generator or torch.Generator().manual_seed(0)

    def start_for(x0):
        if not random_start:
            return None
        lo, hi = bounds(bundle, x0)
        _, std = channel_stats(bundle, x0)
        if norm == "linf":
            d = (torch.rand(x0.shape, generator=g).to(x0.device) * 2 - 1) * eps / std
        else:  # a uniform radius in [0, ε] along a Gaussian direction, in pixel units
            d = torch.randn(x0.shape, generator=g).to(x0.device)
            r = torch.rand(len(x0), generator=g).to(x0.device).view(-1, 1, 1, 1)
            d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * r * eps / std
        return torch.maximum(torch.minimum(x0 + d, hi), lo)

    make = _linf_update(bundle, eps, alpha) if norm == "linf" else _l2_update(bundle, eps, alpha)
    return run_attack(bundle, images, method=f"pgd-{norm}", targets=targets, labels=labels,
                      objective=_ce_objective(targets is not None), update_for=make, steps=steps,
                      early_stop=early_stop, batch_size=batch_size, start_for=start_for)


ATTACKS = {"fgsm": fgsm, "ifgsm": ifgsm, "pgd": pgd}
