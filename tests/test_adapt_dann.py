"""DANN training: the first domain loss, the reversed gradient, resume, divergence."""

import copy
import math
from dataclasses import replace

import pytest
import torch

from cnnlab.adapt import dann as dann_mod
from cnnlab.adapt.dann import AdaptConfig, dann_losses, train_adapt
from cnnlab.adapt.domains import DomainPair, preprocess
from cnnlab.adapt.grl import LambdaSchedule, LRSchedule
from cnnlab.adapt.networks import DANNNet
from cnnlab.data import TensorImageSet
from cnnlab.errors import TrainingDiverged

CLASSES = [str(i) for i in range(10)]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _set(n, channels, seed, name):
    g = torch.Generator().manual_seed(seed)
    return TensorImageSet(torch.randint(0, 256, (n, channels, 28, 28), generator=g, dtype=torch.uint8),
                          torch.randint(0, 10, (n,), generator=g), CLASSES, name)


def tiny_domains(n=48):
    return DomainPair(_set(n, 1, 0, "s"), _set(16, 1, 1, "sv"), _set(16, 1, 2, "st"), _set(n, 3, 3, "t"),
                      _set(16, 3, 4, "tt"), "s", "t")


def test_domain_loss_starts_near_ln2():
    torch.manual_seed(0)
    net = DANNNet()
    d = tiny_domains(64)
    out = dann_losses(net, preprocess(d.source_train.images[:64]), d.source_train.labels[:64],
                      preprocess(d.target_train.images[:64]), 0.0)
    assert out["domain_loss"].item() == pytest.approx(math.log(2), abs=0.05)
    assert out["class_loss"].item() == pytest.approx(math.log(10), abs=0.3)


def _grads(net, loss):
    net.zero_grad()
    loss.backward()
    return {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


def tiny_step_inputs(n=8):
    """A seeded DANN network and one preprocessed source batch (images, labels) and target batch."""
    torch.manual_seed(0)
    net = DANNNet()
    d = tiny_domains(n)
    return net, preprocess(d.source_train.images[:n]), d.source_train.labels[:n], preprocess(d.target_train.images[:n])


def test_dann_step_updates_features_with_the_reversed_domain_gradient():
    net, xs, ys, xt = tiny_step_inputs()
    lam, lr = 0.7, 0.05
    # oracle: separate gradients of the two losses without any GRL
    ref = copy.deepcopy(net)
    g_cls = _grads(ref, dann_losses(ref, xs, ys, xt, None)["class_loss"])
    g_dom = _grads(ref, dann_losses(ref, xs, ys, xt, None)["domain_loss"])
    # the DANN step
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    out = dann_losses(net, xs, ys, xt, lam)
    opt.zero_grad()
    (out["class_loss"] + out["domain_loss"]).backward()
    opt.step()
    for k, p in net.named_parameters():
        if k.startswith("features"):  # label gradient minus λ × domain gradient
            expected = g_cls[k] - lam * g_dom[k]
        elif k.startswith("domain"):  # the domain head descends its own loss
            expected = g_dom[k]
        else:
            expected = g_cls[k]
        assert torch.allclose(p.grad, expected, atol=1e-6, rtol=1e-4), k
        assert torch.allclose(p.detach(), before[k] - lr * expected, atol=1e-6, rtol=1e-4), k  # first SGD step
    # and the feature gradient is not the plain sum (the reversal matters)
    k = "features.0.weight"
    assert not torch.allclose(net.features[0].weight.grad, g_cls[k] + g_dom[k], atol=1e-6)


def _cfg(**kw):
    return replace(AdaptConfig(method="dann", epochs=2, batch_size=16, dev_samples=16,
                               lambda_schedule=LambdaSchedule("paper"), lr=LRSchedule("paper")), **kw)


def test_resume_equals_uninterrupted_run(tmp_path, interrupt_at):
    d = tiny_domains()
    full = train_adapt(d, _cfg(), out=tmp_path / "a")
    restore = interrupt_at(dann_mod, "dann_losses", 4)  # 3 steps per epoch: the first step of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train_adapt(d, _cfg(), out=tmp_path / "b")
    restore()
    resumed = train_adapt(d, _cfg(), out=tmp_path / "b", resume=True)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(full.history)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert sorted(resumed.epoch_weights) == [1, 2]


def test_source_only_and_target_only_report_per_epoch_metrics(tmp_path):
    d = tiny_domains()
    for method in ("source_only", "target_only"):
        seen = []  # on_epoch_end sees each row once the epoch's weights are on disk
        res = train_adapt(d, _cfg(method=method, epochs=1), out=tmp_path,
                          on_epoch_end=lambda r: seen.append((r, (tmp_path / method / "epoch001.pt").exists())))
        assert seen == [(res.history[0], True)]
        row = res.history[0]
        assert {"source_val_acc", "source_test_acc", "target_test_acc", "dev_risk", "target_entropy"} <= set(row)
        assert "domain_acc" not in row and (tmp_path / method / "epoch001.pt").exists()


def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """The loss turns NaN at the first step of epoch 2: training stops with a message, and the run
    folder keeps epoch 1, finite, as its checkpoint (nothing of the diverged epoch is written)."""
    cfg = _cfg(epochs=3)
    steps_per_epoch = 48 // cfg.batch_size
    calls = {"n": 0}
    real = dann_mod.dann_losses

    def nan_in_epoch_2(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        if calls["n"] > steps_per_epoch:
            out["class_loss"] = out["class_loss"] * float("nan")
        return out

    monkeypatch.setattr(dann_mod, "dann_losses", nan_in_epoch_2)
    with pytest.raises(TrainingDiverged, match="diverged"):
        train_adapt(tiny_domains(), cfg, out=tmp_path)
    folder = tmp_path / "dann"
    assert sorted(p.name for p in folder.glob("epoch*.pt")) == ["epoch001.pt"]
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["step"] == steps_per_epoch
    weights = [v for v in ckpt["modules"]["net"].values() if v.is_floating_point()]
    assert weights and all(torch.isfinite(v).all() for v in weights)


def test_feature_extractor_is_the_course_order_conv_relu_pool():
    """cnnlab pools before the ReLU (cheaper); the function and its gradients must be the course's."""
    torch.manual_seed(0)
    net = DANNNet()
    f = net.features
    course = torch.nn.Sequential(f[0], torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 f[3], torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten())
    x = torch.randn(8, 3, 28, 28)
    g = torch.randn(8, 2352)
    ours = torch.autograd.grad(f(x), list(f.parameters()), g)
    ref_out = course(x)
    theirs = torch.autograd.grad(ref_out, list(f.parameters()), g)
    assert torch.equal(f(x), ref_out)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [type(m).__name__ for m in f][:3] == ["Conv2d", "MaxPool2d", "ReLU"]
