"""FGSM/I-FGSM/PGD, the course's fooling image and the attack metrics, with analytic oracles."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab.explain import (attack_table, fgsm, fooling_images, ifgsm, image_quality, pgd, random_targets, summarize,
                            transfer_matrix)
from cnnlab.explain.hooks import hook_count
from cnnlab.explain.inputs import normalised_to_pixels
from test_explain_saliency import linear_bundle, make_bundle, one_thread  # noqa: F401 (autouse fixture)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _pixels(bundle, x):
    return normalised_to_pixels(bundle, x)


def test_fgsm_moves_each_pixel_by_exactly_eps():
    b, lin = linear_bundle(mean=MEAN, std=STD)
    imgs = torch.randint(40, 216, (4, 3, 4, 4), dtype=torch.uint8)  # ±8/255 stays inside [0,1]
    y = torch.tensor([0, 1, 2, 3])
    eps = 8 / 255
    res = fgsm(b, imgs, eps=eps, labels=y)
    d = _pixels(b, res.images) - _pixels(b, res.originals)
    torch.testing.assert_close(d.abs(), torch.full_like(d, eps), rtol=0, atol=1e-6)
    # direction: the sign of ∂CE/∂x = Wᵀ(softmax − onehot), the same in pixel and normalised space
    x = res.originals.flatten(1)
    grad = (F.softmax(lin(x), 1) - F.one_hot(y, 5).float()) @ lin.weight
    assert torch.equal(d.flatten(1).sign(), grad.detach().sign())


def test_fgsm_clipped_at_bounds_and_targeted_direction():
    b, lin = linear_bundle(mean=MEAN, std=STD)
    imgs = torch.randint(0, 2, (3, 3, 4, 4), dtype=torch.uint8) * 255  # every pixel at 0 or 255
    t = torch.tensor([4, 4, 2])
    res = fgsm(b, imgs, eps=16 / 255, targets=t)
    p0, p1 = _pixels(b, res.originals), _pixels(b, res.images)
    lo, hi = b.pixel_bounds
    assert (res.images >= lo - 1e-6).all() and (res.images <= hi + 1e-6).all()
    d = (p1 - p0).abs()
    assert (d <= 16 / 255 + 1e-6).all()
    moved = d > 1e-6
    torch.testing.assert_close(d[moved], torch.full_like(d[moved], 16 / 255), rtol=0, atol=1e-6)
    ce0 = F.cross_entropy(lin(res.originals.flatten(1)), t, reduction="none")
    ce1 = F.cross_entropy(lin(res.images.flatten(1)), t, reduction="none")
    assert (ce1 <= ce0 + 1e-6).all()  # targeted: towards the target


@pytest.mark.parametrize("norm,eps", [("linf", 4 / 255), ("l2", 0.3)])
def test_pgd_stays_in_ball_and_bounds(norm, eps):
    b, _ = linear_bundle(mean=MEAN, std=STD)
    imgs = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    res = pgd(b, imgs, eps=eps, alpha=eps / 3, steps=6, norm=norm, early_stop=False,
              generator=torch.Generator().manual_seed(0))
    d = (_pixels(b, res.images) - _pixels(b, res.originals)).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    lo, hi = b.pixel_bounds
    assert (res.images >= lo - 1e-6).all() and (res.images <= hi + 1e-6).all()
    assert hook_count(b.model) == 0


def test_ifgsm_reaches_a_reachable_target_and_counts_iterations():
    b, lin = linear_bundle(mean=MEAN, std=STD)
    imgs = torch.randint(60, 196, (4, 3, 4, 4), dtype=torch.uint8)
    t = (lin(b.preprocess(imgs).flatten(1)).argmax(1) + 1) % 5  # not the clean prediction
    res = ifgsm(b, imgs, eps=0.5, alpha=0.02, steps=100, targets=t)
    assert res.success.all()
    assert (res.iterations >= 1).all() and (res.iterations < 100).all()
    assert torch.equal(lin(res.images.flatten(1)).argmax(1), t)


def _race_model():
    """Class 0 scores a constant 10.25; class 1 scores ⟨w, x⟩ with ‖w‖ = 1; class 2 can never win."""
    lin = nn.Linear(3 * 4 * 4, 3)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = torch.ones(48) / math.sqrt(48)
        lin.bias.copy_(torch.tensor([10.25, 0.0, -100.0]))
    return make_bundle(nn.Sequential(nn.Flatten(), lin), classes=3)


def test_fooling_iterations_analytic():
    # each step adds η·‖w‖ = η to the class-1 score: from 0 it needs ⌈10.25/η⌉ steps to beat class 0
    b = _race_model()
    x0 = torch.zeros(2, 3, 4, 4)
    res = fooling_images(b, x0, 1, eta=1.0, max_iter=100, clamp=False)
    assert res.success.all() and res.iterations.tolist() == [11, 11]
    assert torch.equal(res.predictions, torch.tensor([1, 1]))
    res_half = fooling_images(b, x0, 1, eta=0.5, max_iter=100, clamp=False)
    assert res_half.iterations.tolist() == [21, 21]


def test_fooling_reports_failure_at_cap():
    b = _race_model()
    x0 = torch.zeros(3, 3, 4, 4)
    # class 2 is unreachable (zero gradient); class 1 needs 11 steps, more than the cap
    res = fooling_images(b, x0, [2, 1, 2], max_iter=7, clamp=False)
    assert res.success.tolist() == [False, False, False]
    assert res.iterations.tolist() == [7, 7, 7]
    assert res.cap == 7
    rows = attack_table(b, res)
    assert rows[0]["success"] is False and rows[0]["iterations"] == 7


def test_fooling_stays_in_bounds_when_clamped():
    b = _race_model()
    res = fooling_images(b, torch.zeros(2, 3, 4, 4), 1, eta=5.0, max_iter=50)
    lo, hi = b.pixel_bounds
    assert (res.images >= lo - 1e-6).all() and (res.images <= hi + 1e-6).all()


def test_random_targets_differ_from_label_and_each_other():
    y = torch.arange(10)
    t = random_targets(y, 9, 10, generator=torch.Generator().manual_seed(0))
    assert (t != y[:, None]).all()
    assert all(len(set(r.tolist())) == 9 for r in t)


def test_metrics_units_and_psnr_oracle():
    b, _ = linear_bundle(mean=MEAN, std=STD)
    imgs = torch.randint(40, 216, (2, 3, 4, 4), dtype=torch.uint8)
    res = fgsm(b, imgs, eps=8 / 255, labels=torch.tensor([0, 1]))
    rows = attack_table(b, res)
    for r in rows:
        assert r["linf_255"] == pytest.approx(8.0, abs=1e-3)
        assert r["l2_255"] == pytest.approx(8.0 * math.sqrt(48), rel=1e-4)
        assert r["psnr"] == pytest.approx(10 * math.log10(1 / (8 / 255) ** 2), abs=1e-3)
    s = summarize(rows, "fgsm")
    assert s["n"] == 2 and 0 <= s["success_rate"] <= 1
    q = image_quality(torch.full((1, 8, 8), 0.5), torch.full((1, 8, 8), 0.5))
    assert q["psnr"] == math.inf and q["ssim"] == pytest.approx(1.0)


def test_transfer_to_itself_is_one():
    b, _ = linear_bundle(mean=MEAN, std=STD)
    imgs = torch.randint(60, 196, (4, 3, 4, 4), dtype=torch.uint8)
    res = ifgsm(b, imgs, eps=0.5, alpha=0.05, steps=50, targets=torch.tensor([1, 2, 3, 4]))
    rows = transfer_matrix({"A": (b, res)}, {"A": b})
    assert rows[0]["A"] == pytest.approx(1.0)
    assert rows[0]["n_fooled"] == int(res.success.sum())


def test_pgd_all_steps_equals_a_plain_reference_loop_and_counts_first_successes():
    """The lean in-place loop (early_stop=False) gives the adversarial images of a plain PGD loop written
    out of place (torchattacks' recipe, per-channel ε/std), and its first-success steps are those of the
    early-stop run; the model's parameters and their requires_grad come back untouched."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(64, 5))
    b = make_bundle(net, classes=5, mean=MEAN, std=STD)
    imgs = torch.randint(0, 256, (16, 3, 4, 4), dtype=torch.uint8)
    t = torch.arange(16) % 5
    eps, alpha, steps = 0.1, 0.01, 15
    kw = dict(eps=eps, alpha=alpha, steps=steps, targets=t)
    res = pgd(b, imgs, early_stop=False, generator=torch.Generator().manual_seed(3), **kw)
    es = pgd(b, imgs, early_stop=True, generator=torch.Generator().manual_seed(3), **kw)
    # the reference: same random start, out of place, in normalised space
    x0 = b.preprocess(imgs)
    lo, hi = b.pixel_bounds
    std = torch.tensor(STD).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(3)
    x = torch.maximum(torch.minimum(x0 + (torch.rand(x0.shape, generator=g) * 2 - 1) * eps / std, hi), lo)
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(-F.cross_entropy(net(x), t), x)
        x = x.detach() + alpha / std * grad.sign()
        x = torch.clamp(torch.minimum(torch.maximum(x, x0 - eps / std), x0 + eps / std), lo, hi)
    torch.testing.assert_close(res.images, x, rtol=0, atol=1e-6)
    assert torch.equal(res.success, net(x).argmax(1) == t)
    both = res.success & es.success
    assert both.any() and torch.equal(res.iterations[both], es.iterations[both])
    assert all(p.requires_grad for p in net.parameters()) and all(p.grad is None for p in net.parameters())
