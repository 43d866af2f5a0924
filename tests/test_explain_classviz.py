"""Class visualisation: jitter, blur, the ascent step in closed form, bounds, seeding, the sweep."""

import pytest
import torch
import torch.nn as nn

from cnnlab.explain import blur, class_visualization, jitter, sweep, unjitter
from cnnlab.explain.hooks import hook_count
from test_explain_saliency import linear_bundle, make_bundle, one_thread  # noqa: F401 (autouse fixture)

PLAIN = dict(blur_every=None, max_jitter=0, clamp=False, progress=False)  # the bare ascent step


@pytest.mark.parametrize("ox,oy", [(0, 0), (3, 1), (16, 16), (7, 0)])
def test_jitter_then_unjitter_is_identity(ox, oy):
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(unjitter(jitter(x, ox, oy), ox, oy), x)
    if (ox, oy) == (3, 1):
        assert torch.equal(jitter(x, ox, oy)[..., 1, 3], x[..., 0, 0])  # a circular roll by (oy, ox)


def test_blur_keeps_constants_and_smooths():
    c = torch.full((1, 3, 9, 9), 0.7)
    torch.testing.assert_close(blur(c, 0.5), c)
    x = torch.randn(1, 1, 16, 16)
    assert blur(x, 0.5).var() < x.var()


def test_ascent_step_closed_form():
    # linear scores: I ← I + lr(W_y − 2λI) = a·I + lr·W_y, a = 1 − 2λ·lr, so I_n = aⁿI₀ + lr·W_y(1 − aⁿ)/(1 − a)
    b, lin = linear_bundle()
    x0 = torch.randn(1, 3, 4, 4)
    lr, lam, n = 0.5, 0.1, 7
    vis = class_visualization(b, 2, init=x0, learning_rate=lr, l2_reg=lam, num_iterations=n, **PLAIN)
    a = 1 - 2 * lam * lr
    w = lin.weight.detach()[2].view(1, 3, 4, 4)
    want = a ** n * x0 + lr * w * (1 - a ** n) / (1 - a)
    torch.testing.assert_close(vis.images, want, rtol=1e-5, atol=1e-6)


def test_huge_l2_shrinks_the_image():
    b, lin = linear_bundle()
    with torch.no_grad():
        lin.weight.mul_(1e-3)
    x0 = torch.randn(1, 3, 4, 4) * 3
    small = class_visualization(b, 0, init=x0, l2_reg=1e-3, learning_rate=5.0, num_iterations=20, **PLAIN)
    huge = class_visualization(b, 0, init=x0, l2_reg=0.09, learning_rate=5.0, num_iterations=20, **PLAIN)
    assert huge.images.norm() < 0.05 * x0.norm()
    assert huge.images.norm() < 0.1 * small.images.norm()


def test_outputs_within_per_channel_bounds_and_no_hooks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5))
    b = make_bundle(net, size=8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    vis = class_visualization(b, [0, 3], learning_rate=50.0, num_iterations=12, snapshot_every=5, progress=False)
    lo, hi = b.pixel_bounds
    for _, imgs in vis.snapshots:
        assert (imgs >= lo - 1e-6).all() and (imgs <= hi + 1e-6).all()
    assert [it for it, _ in vis.snapshots] == [1, 5, 10, 12]
    assert hook_count(net) == 0 and all(p.grad is None for p in net.parameters())


def test_seeded_runs_are_reproducible():
    b, _ = linear_bundle(size=8)
    runs = [class_visualization(b, 1, num_iterations=5, generator=torch.Generator().manual_seed(3), progress=False)
            for _ in range(2)]
    assert torch.equal(runs[0].images, runs[1].images)
    other = class_visualization(b, 1, num_iterations=5, generator=torch.Generator().manual_seed(4), progress=False)
    assert not torch.equal(runs[0].images, other.images)


def test_jitter_default_scales_with_input_size():
    b, _ = linear_bundle(channels=1, size=28, mean=(0.1307,), std=(0.3081,))
    vis = class_visualization(b, 0, num_iterations=1, progress=False)
    assert vis.settings["max_jitter"] == 2  # the course's 16 px at 224 → 2 px at 28


def test_batched_settings_equal_single_runs():
    # per-image learning rates in one batch give the same images as separate runs (images are independent)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    b = make_bundle(net, size=8)
    x0 = torch.randn(1, 3, 8, 8)
    both = class_visualization(b, [2, 2], init=x0.expand(2, -1, -1, -1), learning_rate=[1.0, 5.0], num_iterations=6,
                               generator=torch.Generator().manual_seed(0), progress=False)
    for k, lr in enumerate([1.0, 5.0]):
        one = class_visualization(b, 2, init=x0, learning_rate=lr, num_iterations=6,
                                  generator=torch.Generator().manual_seed(0), progress=False)
        torch.testing.assert_close(both.images[k:k + 1], one.images, rtol=1e-5, atol=1e-6)


def test_sweep_grid_shape():
    b, _ = linear_bundle(size=8)
    sw = sweep(b, 1, iterations=(1, 2), learning_rates=(1.0, 5.0), l2_regs=(1e-3,), num_iterations=3,
               generator=torch.Generator().manual_seed(0), progress=False)
    assert [lab for lab, _ in sw["grid"]["iterations"]] == ["1 it", "2 it"]
    assert len(sw["grid"]["learning_rate"]) == 2 and len(sw["grid"]["l2_reg"]) == 1
    assert sw["grid"]["l2_reg"][0][1].shape == (3, 8, 8)
