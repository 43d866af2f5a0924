"""VADA: DANN plus the cluster assumption on the target (Shu, Bui, Narui & Ermon, ICLR 2018).

DANN aligns the feature distributions but lets the classifier's boundary cut through dense target
regions. VADA adds two target terms that push the boundary away from the target data:

* **conditional entropy** H(p(y|x_t)), mean over the target batch: confident target predictions;
* **virtual adversarial training** (Miyato et al. 2018): KL(p(y|x) ‖ p(y|x + r_adv)), where r_adv is
  the perturbation of L2 norm ``radius`` that changes the prediction most (one power iteration from a
  random direction). It keeps the classifier locally Lipschitz, which entropy minimisation alone does
  not (a confident but jagged boundary satisfies it).

One step on a source batch (xs, ys) and a target batch xt:

    r_t    = radius · unit(∇_d KL(p(xt) ‖ p(xt + ξ·d)))       d random, ξ = 1e-6; no parameter gradient
    logits, d_logits = net([xs; xt; xt + r_t])                   one pass (DDP wraps it under torchrun)
    L = CE(source) + L_domain + w_t · (H(target) + KL(p(xt)‖p(xt + r_t))) [+ w_s · VAT(source)]

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
                     generator: torch.Generator | None = None, precision: str = "fp32") -> torch.Tensor:
    """The adversarial direction of VAT, scaled to L2 norm ``radius`` per image (one power iteration).

    Only the gradient with respect to the perturbation is taken (``torch.autograd.grad``), so the
    network's parameters receive nothing from this pass and DDP's hooks never fire on it."""
    with torch.no_grad(), autocast_for(precision, x.device):
        clean = net(x).float()
    # one draw for the global batch and this rank's rows of it (torchrun): each image gets the noise that
    # one process would give it, so VADA under DDP trains like one process
    d = distributed.shard(torch.randn((len(x) * distributed.world_size(), *x.shape[1:]), generator=generator))
    d = d.to(x.device, x.dtype)
    d = (xi * _unit(d)).requires_grad_(True)
    with autocast_for(precision, x.device):
        out = net(x + d)
    (grad,) = torch.autograd.grad(kl_from_logits(clean, out), d)
    return (radius * _unit(grad)).detach()


def vada_losses(net: nn.Module, xs: torch.Tensor, ys: torch.Tensor, xt: torch.Tensor, lambda_: float | None, *,
                radius: float, target_weight: float, source_vat_weight: float = 0.0, precision: str = "fp32",
                adversary: str = "grl", outputs=None, generator: torch.Generator | None = None
                ) -> dict[str, torch.Tensor]:
    """The losses of one VADA step (preprocessed inputs). ``adversary``: "grl" (``lambda_`` reverses the
    domain loss's gradient) or "confusion" (the features minimise ``lambda_`` × the domain loss with
    flipped labels; see ``DANNNet.vada_outputs``). ``outputs``: what computes ``net.vada_outputs``
    (its DDP wrapper under torchrun). Returns the terms and ``total``."""
    b, bt = len(xs), len(xt)
    r_t = vat_perturbation(net, xt, radius, generator=generator, precision=precision)
    rows = [xs, xt, xt + r_t]
    if source_vat_weight > 0:
        rows.append(xs + vat_perturbation(net, xs, radius, generator=generator, precision=precision))
    confusion = adversary == "confusion"
    with autocast_for(precision, xs.device):
        logits, d_logits, d_frozen = (outputs or net.vada_outputs)(torch.cat(rows), b + bt,
                                                                   None if confusion else lambda_, confusion)
    logits = logits.float()
    ls, lt, lt_adv = logits[:b], logits[b:b + bt], logits[b + bt:b + 2 * bt]
    d_true = torch.cat([torch.ones(b, device=xs.device), torch.zeros(bt, device=xs.device)])
    out = {"class_loss": F.cross_entropy(ls, ys),
           "domain_loss": F.binary_cross_entropy_with_logits(d_logits.float(), d_true),
           "target_entropy_loss": conditional_entropy(lt),
           "target_vat_loss": kl_from_logits(lt, lt_adv)}
    total = out["class_loss"] + out["domain_loss"] + target_weight * (out["target_entropy_loss"] + out["target_vat_loss"])
    if d_frozen is not None:  # the features' share: make the head call source target and target source
        out["confusion_loss"] = F.binary_cross_entropy_with_logits(d_frozen.float(), 1.0 - d_true)
        total = total + (lambda_ or 0.0) * out["confusion_loss"]
    if source_vat_weight > 0:
        out["source_vat_loss"] = kl_from_logits(ls, logits[b + 2 * bt:])
        total = total + source_vat_weight * out["source_vat_loss"]
    out["class_acc"] = (ls.argmax(1) == ys).float().mean()
    out["domain_acc"] = ((d_logits.float() > 0).float() == d_true).float().mean()
    out["total"] = total
    return out
