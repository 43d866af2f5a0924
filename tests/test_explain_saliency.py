"""Saliency, SmoothGrad, Grad-CAM and the sanity check on tiny models with hand-computable answers."""

import pytest
import torch
import torch.nn as nn

from cnnlab.explain import grad_cam, model_randomization_check, saliency_maps, smoothgrad, spearman
from cnnlab.explain.hooks import capture_output, hook_count, untouched
from cnnlab.models import ModelBundle


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread is faster, and far faster on a loaded shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_bundle(model: nn.Module, *, channels=3, size=4, mean=None, std=None, classes=5) -> ModelBundle:
    """A tiny classifier wrapped like build_model's output."""
    mean = mean or (0.5,) * channels
    std = std or (0.25,) * channels
    return ModelBundle(model.eval(), "tiny", "NONE", "NONE", tuple(mean), tuple(std), size, channels,
                       [f"c{i}" for i in range(classes)])


def linear_bundle(channels=3, size=4, classes=5, **kw) -> tuple[ModelBundle, nn.Linear]:
    lin = nn.Linear(channels * size * size, classes)
    return make_bundle(nn.Sequential(nn.Flatten(), lin), channels=channels, size=size, classes=classes, **kw), lin


def cam_net(inplace: bool) -> nn.Module:
    """conv 1×1 → ReLU → global average pool → linear: Grad-CAM has a closed form."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(inplace=inplace), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5))


def test_linear_saliency_is_abs_weight_max_over_channels():
    b, lin = linear_bundle()
    x = torch.randn(6, 3, 4, 4)
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    maps = saliency_maps(b, x, t, batch_size=4)  # two batches
    want = lin.weight.detach()[t].view(6, 3, 4, 4).abs().amax(1)
    assert maps.shape == (6, 4, 4)
    torch.testing.assert_close(maps, want, rtol=0, atol=1e-7)


def test_uint8_inputs_are_preprocessed_and_default_target_is_prediction():
    b, lin = linear_bundle(mean=(0.1, 0.2, 0.3), std=(0.3, 0.2, 0.1))
    imgs = torch.randint(0, 256, (3, 3, 4, 4), dtype=torch.uint8)
    pred = lin(b.preprocess(imgs).flatten(1)).argmax(1)
    want = lin.weight.detach()[pred].view(3, 3, 4, 4).abs().amax(1)  # gradient w.r.t. the normalised input
    torch.testing.assert_close(saliency_maps(b, imgs), want, rtol=0, atol=1e-7)


def test_smoothgrad_of_linear_model_equals_saliency():
    b, _ = linear_bundle()
    x = torch.randn(2, 3, 4, 4)
    sg = smoothgrad(b, x, [1, 2], samples=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(sg, saliency_maps(b, x, [1, 2]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("inplace", [True, False])
def test_grad_cam_closed_form_with_inplace_relu(inplace):
    net = cam_net(inplace)
    b = make_bundle(net)
    x = torch.randn(2, 3, 4, 4)
    t = torch.tensor([3, 1])
    cam = grad_cam(b, x, t, layer="0")  # the conv, whose output the in-place ReLU overwrites
    with torch.no_grad():
        A = net[0](x)  # B×4×4×4, pre-ReLU
        W = net[4].weight[t]  # B×4
        alpha = W * (A > 0).float().mean((2, 3)) / 16  # ∂y/∂A = W·1[A>0]/(h·w), averaged over space
        want = torch.relu((alpha[:, :, None, None] * A).sum(1))
    torch.testing.assert_close(cam, want, rtol=1e-5, atol=1e-6)


def test_inplace_relu_does_not_change_saliency():
    a, b = make_bundle(cam_net(True)), make_bundle(cam_net(False))
    x = torch.randn(3, 3, 4, 4)
    torch.testing.assert_close(saliency_maps(a, x, 2), saliency_maps(b, x, 2))


def test_model_left_as_found():
    net = cam_net(True)
    net.train()
    net[0].weight.requires_grad_(False)
    b = make_bundle(net)
    net.train()  # make_bundle put it in eval; a user's model may be in train mode
    flags = [p.requires_grad for p in net.parameters()]
    x = torch.randn(2, 3, 4, 4)
    saliency_maps(b, x)
    smoothgrad(b, x, samples=2)
    grad_cam(b, x, layer="0")
    model_randomization_check(b, x, steps=2)
    assert hook_count(net) == 0
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())


def test_hooks_removed_even_on_error():
    net = cam_net(True)
    with pytest.raises(RuntimeError):
        with untouched(net), capture_output(net, "0"):
            raise RuntimeError("boom")
    assert hook_count(net) == 0


def test_grad_cam_rejects_non_spatial_layer():
    from cnnlab.errors import CnnlabError

    b = make_bundle(cam_net(True))
    with pytest.raises(CnnlabError, match="feature map"):
        grad_cam(b, torch.randn(1, 3, 4, 4), layer="4")  # the Linear: B×5
    with pytest.raises(CnnlabError, match="not a layer"):
        grad_cam(b, torch.randn(1, 3, 4, 4), layer="nope")
    assert hook_count(b.model) == 0


def test_spearman_oracles():
    a = torch.rand(5, 5)
    assert spearman(a, a.exp()) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_sanity_check_randomises_a_copy():
    b = make_bundle(cam_net(False))
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    res = model_randomization_check(b, torch.randn(3, 3, 4, 4), steps=2, generator=torch.Generator().manual_seed(0))
    assert [r["layers"] for r in res.rows] == [1, 2]  # two parametrised layers: linear, then conv
    assert res.rows[-1]["randomised"] == "all"
    assert all(-1 <= r["spearman_mean"] <= 1 for r in res.rows)
    for k, v in b.model.state_dict().items():
        assert torch.equal(v, before[k])


def test_squeezenet_inplace_relus_match_out_of_place_copy():
    """SqueezeNet 1.1 (in-place ReLUs, Fire modules): saliency and Grad-CAM on fire9 equal those of a copy
    whose ReLUs are out of place, and no hook is left behind."""
    import copy

    from cnnlab.models import build_model

    torch.manual_seed(0)
    b = build_model("squeezenet1_1", "NONE", input_size=64)
    ref = copy.deepcopy(b)
    for m in ref.model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    t = torch.tensor([3, 7])
    torch.testing.assert_close(saliency_maps(b, x, t), saliency_maps(ref, x, t))
    cam = grad_cam(b, x, t, layer="fire9")  # alias → features.12
    torch.testing.assert_close(cam, grad_cam(ref, x, t, layer="fire9"))
    assert cam.shape == (2, 64, 64) and cam.abs().sum() > 0
    assert hook_count(b.model) == 0
