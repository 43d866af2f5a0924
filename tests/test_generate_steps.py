"""The D step and the G step: each changes only its own network; losses at init; D-Q3's gradients."""

import math

import pytest
import torch

from cnnlab.generate.networks import build_gan
from cnnlab.generate.steps import d_step, g_step, generator_loss

from test_generate_helpers import one_thread  # noqa: F401,E402  (autouse fixture)


def _setup(model="dcgan"):
    G, D = build_gan(model, ngf=8, ndf=8, generator=torch.Generator().manual_seed(0))
    opt_g = torch.optim.Adam(G.parameters(), lr=5e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(1)
    real = torch.rand(16, 1, 32, 32, generator=g) * 2 - 1
    z = torch.randn(16, 100, generator=g)
    y = torch.randint(0, 10, (16,), generator=g) if model == "cdcgan" else None
    return G, D, opt_g, opt_d, real, z, y


def _params(m):
    return [p.detach().clone() for p in m.parameters()]


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a, b))


def _all_changed(a, b):
    return all(not torch.equal(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_d_step_changes_only_D(model):
    G, D, opt_g, opt_d, real, z, y = _setup(model)
    g0, d0 = _params(G), _params(D)
    fake = G(z, y)
    d_step(D, opt_d, real, fake, y, y)
    assert _same(g0, _params(G))
    assert _all_changed(d0, _params(D))
    assert all(p.grad is None for p in G.parameters())  # fake was detached: no work for G


@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_g_step_changes_only_G(model):
    G, D, opt_g, opt_d, real, z, y = _setup(model)
    g0, d0 = _params(G), _params(D)
    g_step(D, opt_g, G(z, y), y)
    assert _same(d0, _params(D))
    assert _all_changed(g0, _params(G))
    assert all(p.requires_grad for p in D.parameters())  # D unfrozen again
    assert all(p.grad is None for p in D.parameters())  # and charged no weight gradients


def test_losses_at_init():
    """With N(0, 0.02) weights D's logits are small: D(x) ≈ D(G(z)) ≈ 0.5 and the losses ≈ their
    chance values 2 ln 2 (D) and ln 2 (G). A seed shifts all logits by a shared offset; flipping the
    last layer's sign flips it, so over seeds D(x) averages 0.5."""
    d_x, loss_d, loss_g = [], [], []
    for seed in range(8):
        G, D = build_gan("dcgan", generator=torch.Generator().manual_seed(seed))  # the course's widths
        opt_g = torch.optim.Adam(G.parameters(), lr=5e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        g = torch.Generator().manual_seed(seed)
        real = torch.rand(32, 1, 32, 32, generator=g) * 2 - 1
        fake = G(torch.randn(32, 100, generator=g))
        out = g_step(D, opt_g, fake)  # G's loss against D at its init (reported before the update)
        d = d_step(D, opt_d, real, fake.detach())  # D's loss and outputs: D still at its init
        out.update(d)
        assert all(math.isfinite(v) for v in out.values())
        assert 0.25 < d["D_x"] < 0.75 and 0.25 < d["D_G_z"] < 0.75
        d_x.append(d["D_x"]), loss_d.append(d["loss_D"]), loss_g.append(out["loss_G"])
    assert abs(sum(d_x) / len(d_x) - 0.5) < 0.06
    assert abs(sum(loss_d) / len(loss_d) - 2 * math.log(2)) < 0.15
    assert abs(sum(loss_g) / len(loss_g) - math.log(2)) < 0.15


def test_generator_losses_match_their_formulas():
    p = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=torch.float64)
    logit = torch.logit(p)
    assert torch.allclose(generator_loss(logit, "non-saturating"), -torch.log(p).mean())
    assert torch.allclose(generator_loss(logit, "saturating"), torch.log(1 - p).mean())
    with pytest.raises(ValueError):
        generator_loss(logit, "wasserstein")


def test_saturating_gradient_vanishes_when_D_wins():
    """D-Q3: d/dlogit of log(1 − σ(l)) is −σ(l) → 0 as D(G(z)) → 0; of −log σ(l) it is σ(l) − 1 → −1."""
    for p in (0.1, 0.01, 0.001):
        grads = {}
        for kind in ("saturating", "non-saturating"):
            logit = torch.logit(torch.tensor([p], dtype=torch.float64)).requires_grad_(True)
            generator_loss(logit, kind).backward()
            grads[kind] = logit.grad.item()
        assert grads["saturating"] == pytest.approx(-p, rel=1e-9)
        assert grads["non-saturating"] == pytest.approx(p - 1, rel=1e-9)


def test_steps_under_bf16_autocast_are_finite():
    G, D, opt_g, opt_d, real, z, _ = _setup()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fake = G(z)
        out = {**d_step(D, opt_d, real, fake), **g_step(D, opt_g, fake)}
    assert all(math.isfinite(v) for v in out.values())
    assert all(p.dtype == torch.float32 for p in G.parameters())  # weights stay fp32
