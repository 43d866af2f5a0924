"""One discriminator step and one generator step, as separate functions (Goodfellow et al. 2014).

D maximises log D(x) + log(1 − D(G(z))): BCE with target 1 on real images, 0 on generated ones.
G has two losses (D-Q3):

* ``"non-saturating"`` (the course's default): maximise log D(G(z)), i.e. BCE(D(G(z)), 1);
  strong gradients when D confidently rejects the samples (early training);
* ``"saturating"`` (the minimax game's "true" loss): minimise log(1 − D(G(z))); its gradient
  vanishes exactly when D wins, so G barely learns at the start.

Both steps work on D's logits with ``binary_cross_entropy_with_logits``: the same values as BCE on
the Sigmoid output, without log(0) when D saturates.

Beyond the course (options of ``cnnlab gan train``, measured in docs/checks/part_d.md):

* the **hinge** loss (Lim & Ye 2017; SN-GAN, BigGAN): D minimises E[max(0, 1 − D(x))] +
  E[max(0, 1 + D(G(z)))], G minimises −E[D(G(z))] (``d_loss="hinge"``, G loss ``"hinge"``);
* the **R1 penalty** (Mescheder et al. 2018): γ/2 · E‖∇ₓD(x)‖² on real images, added to D's loss;
  the caller applies it every k-th step with weight k·γ ("lazy" regularisation, Karras et al. 2020).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

G_LOSSES = ("non-saturating", "saturating", "hinge")
D_LOSSES = ("bce", "hinge")

# The forward passes' context (bf16 autocast, or nothing): backward and the optimiser step run
# outside it, as autocast's documentation asks (their dtypes follow the forward's).
Forward = Callable[[], ContextManager]


def _logits(D: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    # fp32 for the losses: under bf16 autocast a logit of 5 is only resolved to ±0.03
    out = D.logits(x, y) if hasattr(D, "logits") else torch.logit(D(x, y).float(), eps=1e-7)
    return out.float()


def discriminator_loss(out_real: torch.Tensor, out_fake: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """D's loss on its logits for a real and a generated batch, each term a mean over its batch."""
    if kind == "bce":  # the course's errD_real + errD_fake
        return (F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
                + F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake)))
    if kind == "hinge":
        return F.relu(1 - out_real).mean() + F.relu(1 + out_fake).mean()
    raise ValueError(f"discriminator loss {kind!r}: choose one of {', '.join(D_LOSSES)}")


def r1_penalty(out_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E‖∇ₓ D(x)‖² over the batch (``real`` must require grad; the graph is kept for D's backward)."""
    (grad,) = torch.autograd.grad(out_real.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def d_step(D: nn.Module, opt_d: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor,
           y: torch.Tensor | None = None, y_fake: torch.Tensor | None = None, *,
           forward: Forward = contextlib.nullcontext, logits_of: Callable | None = None, loss: str = "bce",
           r1: float = 0.0) -> dict[str, float]:
    """One update of D on a real batch and a generated batch (``fake`` is detached here, so G is
    untouched). Returns the D loss, mean D(x) and mean D(G(z)) before the update. ``logits_of(x, y)``:
    what computes D's logits (D's DDP wrapper under torchrun; default: D itself). ``loss``: ``"bce"``
    (the course) or ``"hinge"``; ``r1`` > 0 adds r1/2 · E‖∇ₓD(x)‖² on this step."""
    logits = logits_of or (lambda x, c: _logits(D, x, c))
    opt_d.zero_grad(set_to_none=True)
    if r1 > 0:
        real = real.detach().requires_grad_(True)
    # parametrize.cached: a spectrally normalised D computes its weights (one power iteration) once for
    # both batches, as one update of SN-GAN does; a no-op for a D without parametrisations
    with forward(), parametrize.cached():
        out_real = logits(real, y).float()  # (B,)
        out_fake = logits(fake.detach(), y if y_fake is None else y_fake).float()  # (B,)
    adv = discriminator_loss(out_real, out_fake, loss)
    (adv + 0.5 * r1 * r1_penalty(out_real, real) if r1 > 0 else adv).backward()
    opt_d.step()
    # 0-d tensors, read by the training loop every few steps (no host synchronisation per step on a GPU)
    return {"loss_D": adv.detach(), "D_x": torch.sigmoid(out_real.detach()).mean(),
            "D_G_z": torch.sigmoid(out_fake.detach()).mean()}


def generator_loss(logits_fake: torch.Tensor, kind: str = "non-saturating") -> torch.Tensor:
    if kind == "non-saturating":
        return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))  # −log D(G(z))
    if kind == "saturating":
        return -F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))  # log(1 − D(G(z)))
    if kind == "hinge":
        return -logits_fake.mean()  # −E[D(G(z))] on the raw score
    raise ValueError(f"generator loss {kind!r}: choose one of {', '.join(G_LOSSES)}")


def g_step(D: nn.Module, opt_g: torch.optim.Optimizer, fake: torch.Tensor, y: torch.Tensor | None = None,
           *, loss: str = "non-saturating", forward: Forward = contextlib.nullcontext) -> dict[str, float]:
    """One update of G through D (``fake = G(z)`` must carry G's graph). D's parameters are frozen
    for the backward pass, so D is neither updated nor charged for weight gradients."""
    frozen = [p for p in D.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        opt_g.zero_grad(set_to_none=True)
        with forward():
            out = _logits(D, fake, y)  # (B,), D as just updated by d_step
        lg = generator_loss(out, loss)
        lg.backward()
        opt_g.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return {"loss_G": lg.detach(), "D_G_z_after": torch.sigmoid(out.detach()).mean()}
