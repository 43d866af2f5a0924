"""VADA: DANN plus the cluster assumption on the target (Shu, Bui, Narui & Ermon, ICLR 2018).

DANN aligns the feature distributions but lets the classifier's boundary cut through dense target
regions. VADA adds two target terms that push the boundary away from the target data:

* **conditional entropy** H(p(y|x_t)), mean over the target batch: confident target predictions;
* **virtual adversarial training** (Miyato et al. 2018): KL(p(y|x) ‖ p(y|x + r_adv)), where r_adv is
  the perturbation of L2 norm ``radius`` that changes the prediction most (one power iteration from a
  random direction). It keeps the classifier locally Lipschitz, which entropy minimisation alone does
  not (a confident but jagged boundary satisfies it).

One step on a source batch (xs, ys) and a target batch xt:

    logits, d_logits = net([xs; xt])                             the main pass (DDP wraps it under torchrun)
    r_t    = radius · unit(∇_d KL(p(xt) ‖ p(xt + ξ·d)))       d random, ξ = 1e-6; no parameter gradient;
                                                                 p(xt) is the main pass's, detached
    L = CE(source) + L_domain + w_t · (H(target) + KL(p(xt)‖p(net(xt + r_t)))) [+ w_s · VAT(source)]

The network has no batch statistics or dropout, so the main pass's target logits are the clean logits
VAT needs (the authors' code reuses them too): no separate clean pass (docs/checks/part_c.md, session 14).

``adversary="confusion"`` (VADA_DEFAULTS; as the authors' code): L_domain = BCE(D(sg(f)), d) + λ · BCE(sg(D)(f), 1 − d),
with sg = stop-gradient and d = 1 for source, 0 for target: the head learns the domains, the features learn
to swap them. ``adversary="grl"``: L_domain = BCE(D(GRL_λ(f)), d), as the course's DANN.

The course's DANN is left as it is; VADA is a separate method of the same ``cnnlab adapt`` table.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab import distributed
from cnnlab.precision import autocast_for


def conditional_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of H(softmax(logits)), differentiable (nats)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(softmax(p) ‖ softmax(q)); p is treated as a fixed target (detached)."""
    logp = F.log_softmax(p_logits.detach().float(), dim=1)
    return (logp.exp() * (logp - F.log_softmax(q_logits.float(), dim=1))).sum(1).mean()


def _unit(d: torch.Tensor) -> torch.Tensor:
    return d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (d.dim() - 1)))


def vat_perturbation(net: nn.Module, x: torch.Tensor, radius: float, *, xi: float = 1e-6,
                     clean: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     precision: str = "fp32") -> torch.Tensor:
    """The adversarial direction of VAT, scaled to L2 norm ``radius`` per image (one power iteration).
    ``clean``: ``net``'s logits of ``x`` when the caller has them (else computed here).

    Only the gradient with respect to the perturbation is taken (``torch.autograd.grad``), so the
    network's parameters receive nothing from this pass and DDP's hooks never fire on it."""
    if clean is None:
        with torch.no_grad(), autocast_for(precision, x.device):
            clean = net(x)
    clean = clean.detach().float()
    # one draw for the global batch and this rank's rows of it (torchrun): each image gets the noise that
    # one process would give it, so VADA under DDP trains like one process
    d = distributed.shard(torch.randn((len(x) * distributed.world_size(), *x.shape[1:]), generator=generator))
    d = d.to(x.device, x.dtype)
    d = (xi * _unit(d)).requires_grad_(True)
    with autocast_for(precision, x.device):
        out = net(x + d)
    (grad,) = torch.autograd.grad(kl_from_logits(clean, out), d)
    return (radius * _unit(grad)).detach()


def vat_loss(net: nn.Module, x: torch.Tensor, logits: torch.Tensor, radius: float, *,
             generator: torch.Generator | None = None, precision: str = "fp32") -> torch.Tensor:
    """VAT's term KL(p(x) ‖ p(x + r_adv)), mean over the batch, from ``logits`` = ``net``'s logits of ``x``
    (detached here: the gradient reaches the parameters through the perturbed pass only)."""
    r = vat_perturbation(net, x, radius, clean=logits, generator=generator, precision=precision)
    with autocast_for(precision, x.device):
        adv = net(x + r)
    return kl_from_logits(logits, adv)


def vada_losses(net: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor, lambda_: float | None, *,
                radius: float, target_weight: float, source_vat_weight: float = 0.0, precision: str = "fp32",
                adversary: str = "grl", outputs=None, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
    """The losses of one VADA step (preprocessed inputs). ``adversary``: "grl" (``lambda_`` reverses the
    domain loss's gradient) or "confusion" (the features minimise ``lambda_`` × the domain loss with
    flipped labels; see ``DANNNet.vada_outputs``). ``outputs``: what computes ``net.vada_outputs``
    (its DDP wrapper under torchrun; VAT's perturbed passes call ``net`` itself, and their gradients join
    the same backward). Returns the terms and ``total``."""
    b = len(xs)
    confusion = adversary == "confusion"
    with autocast_for(precision, xs.device):
        logits, d_logits, d_frozen = (outputs or net.vada_outputs)(torch.cat([xs, xt]), None if confusion else lambda_,
                                                                   confusion)
    logits = logits.float()
    ls, lt = logits[:b], logits[b:]
    d_true = torch.cat([torch.ones(b, device=xs.device), torch.zeros(len(xt), device=xs.device)])
    out = {"class_loss": F.cross_entropy(ls, ys),
           "domain_loss": F.binary_cross_entropy_with_logits(d_logits.float(), d_true),
           "target_entropy_loss": conditional_entropy(lt),
           "target_vat_loss": vat_loss(net, xt, lt, radius, generator=generator, precision=precision)}
    total = out["class_loss"] + out["domain_loss"] + target_weight * (out["target_entropy_loss"] + out["target_vat_loss"])
    if d_frozen is not None:  # the features' share: make the head call source target and target source
        out["confusion_loss"] = F.binary_cross_entropy_with_logits(d_frozen.float(), 1.0 - d_true)
        total = total + (lambda_ or 0.0) * out["confusion_loss"]
    if source_vat_weight > 0:
        out["source_vat_loss"] = vat_loss(net, xs, ls, radius, generator=generator, precision=precision)
        total = total + source_vat_weight * out["source_vat_loss"]
    out["class_acc"] = (ls.argmax(1) == ys).float().mean()
    out["domain_acc"] = ((d_logits.float() > 0).float() == d_true).float().mean()
    out["total"] = total
    return out
