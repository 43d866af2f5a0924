"""Inside the adaptation loops, step by step: the λ and learning-rate schedules DANN applies, the
self-training rounds and their resume, and the t-SNE study's linear domain probe."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from cnnlab.adapt import dann as dann_mod
from cnnlab.adapt import pseudo as pseudo_mod
from cnnlab.adapt.dann import AdaptConfig, features_and_logits, train_adapt
from cnnlab.adapt.domains import DomainPair
from cnnlab.adapt.grl import LambdaSchedule, LRSchedule
from cnnlab.adapt.networks import DANNNet
from cnnlab.adapt.pseudo import PseudoConfig, self_train
from cnnlab.adapt.studies import tsne_features
from cnnlab.data import TensorImageSet
from test_adapt_dann import tiny_domains  # noqa: E402  (the same tiny domains)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

CLASSES = [str(i) for i in range(10)]


class _Spy:
    """Records the λ that each DANN step gives the GRL and the learning rate of each optimiser step."""

    def __init__(self, monkeypatch):
        self.lambdas, self.lrs = [], []
        real = dann_mod.dann_losses

        def spy(net, xs, ys, xt, lambda_, *a, **k):
            self.lambdas.append(lambda_)
            return real(net, xs, ys, xt, lambda_, *a, **k)

        monkeypatch.setattr(dann_mod, "dann_losses", spy)

    def __enter__(self):
        self.hook = register_optimizer_step_pre_hook(
            lambda opt, args, kwargs: self.lrs.append(opt.param_groups[0]["lr"]))
        return self

    def __exit__(self, *exc):
        self.hook.remove()


@pytest.mark.parametrize("lr_kind, lambda_kind", [("paper", "paper"), ("course", "course")])
def test_dann_applies_both_schedules_at_every_step(tmp_path, monkeypatch, lr_kind, lambda_kind):
    """3 steps an epoch × 2 epochs. λ(p) = 2/(1+e^(−γp)) − 1 with p = step/total (γ = 10 paper, 2
    course); μ(p) = 0.01/(1+10p)^0.75 with p = step/total (paper) or completed epochs/epochs (course)."""
    cfg = replace(AdaptConfig(method="dann", epochs=2, batch_size=16, dev_samples=16, precision="fp32"),
                  lambda_schedule=LambdaSchedule(lambda_kind), lr=LRSchedule(lr_kind))
    with _Spy(monkeypatch) as spy:
        train_adapt(tiny_domains(), cfg, out=tmp_path)
    total, gamma = 6, (10.0 if lambda_kind == "paper" else 2.0)
    want_lam = [2 / (1 + math.exp(-gamma * s / total)) - 1 for s in range(total)]
    p_lr = [s / total for s in range(total)] if lr_kind == "paper" else [s // 3 / 2 for s in range(total)]
    want_lr = [0.01 / (1 + 10 * p) ** 0.75 for p in p_lr]
    assert spy.lambdas == pytest.approx(want_lam, rel=1e-12)
    assert spy.lrs == pytest.approx(want_lr, rel=1e-12)
    assert spy.lambdas[0] == 0.0 and spy.lrs[0] == 0.01  # the first step: no reversal yet, full rate


def test_without_reversal_the_grl_is_left_out_and_lambda_is_not_passed(tmp_path, monkeypatch):
    cfg = AdaptConfig(method="dann", epochs=1, batch_size=16, dev_samples=16, precision="fp32",
                      lambda_schedule=LambdaSchedule("none"))
    with _Spy(monkeypatch) as spy:
        train_adapt(tiny_domains(), cfg, out=tmp_path)
    assert spy.lambdas == [None, None, None]


# --------------------------------------------------------------------------- self-training
def _start_net():
    torch.manual_seed(0)
    return DANNNet()


def _pl_config(**kw):
    return PseudoConfig(**{"rounds": 2, "threshold": 0.0, "class_balance": False, "epochs_per_round": 2,
                           "batch_size": 16, "precision": "fp32", **kw})


def test_each_round_trains_on_the_previous_models_predictions(tmp_path):
    d = tiny_domains()
    start = _start_net()
    rows = self_train(start, d, _pl_config(), out=tmp_path, name="pl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert [r["pseudo_labels"] for r in rows] == [0, 48, 48]  # threshold 0: every target image
    # round r's pseudo-labels are the argmax of round r-1's model on the target training images
    for r, weights in ((1, start.state_dict()), (2, torch.load(tmp_path / "pl" / "round1.pt", weights_only=True))):
        net = DANNNet()
        net.load_state_dict(weights)
        net.eval()
        with torch.no_grad():
            _, logits, _ = features_and_logits(net, d.target_train.images, precision="fp32", keep_features=False)
        want = (logits.argmax(1) == d.target_train.labels).float().mean().item()
        assert rows[r]["pseudo_label_acc"] == pytest.approx(want)
    # and the rounds changed the model
    assert not torch.equal(torch.load(tmp_path / "pl" / "round2.pt", weights_only=True)["classifier.0.weight"],
                           start.state_dict()["classifier.0.weight"])


def test_a_high_threshold_with_too_few_confident_images_stops_early(tmp_path):
    rows = self_train(_start_net(), tiny_domains(), _pl_config(threshold=0.999), out=tmp_path, name="pl")
    assert [r["round"] for r in rows] == [0]  # a random network is never that confident


def test_self_training_resumes_where_it_was_interrupted(tmp_path, monkeypatch):
    d = tiny_domains()
    full = self_train(_start_net(), d, _pl_config(), out=tmp_path / "a", name="pl")
    calls = {"n": 0}
    real = pseudo_mod.preprocess
    per_round = 2 * 2 * 3  # 2 calls a step, 3 steps an epoch, 2 epochs a round

    def interrupt_in_round_2_epoch_2(x):
        calls["n"] += 1
        if calls["n"] == per_round + 2 * 3 + 3:
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(pseudo_mod, "preprocess", interrupt_in_round_2_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        self_train(_start_net(), d, _pl_config(), out=tmp_path / "b", name="pl")
    assert (tmp_path / "b" / "pl" / "round1.pt").exists() and not (tmp_path / "b" / "pl" / "round2.pt").exists()
    monkeypatch.setattr(pseudo_mod, "preprocess", real)
    resumed = self_train(_start_net(), d, _pl_config(), out=tmp_path / "b", name="pl", resume=True)
    assert resumed == full
    a = torch.load(tmp_path / "a" / "pl" / "round2.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "pl" / "round2.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- t-SNE and the domain probe
def test_domain_probe_tells_separable_domains_from_identical_ones():
    g = torch.Generator().manual_seed(0)
    src = TensorImageSet(torch.randint(0, 128, (120, 3, 28, 28), generator=g, dtype=torch.uint8),
                         torch.randint(0, 10, (120,), generator=g), CLASSES, "s")
    bright = TensorImageSet(src.images + 127, src.labels, CLASSES, "t")  # the same digits, brighter
    torch.manual_seed(0)
    net = DANNNet()
    same = DomainPair(src, src, src, src, src, "s", "s")
    apart = DomainPair(src, src, src, bright, bright, "s", "t")
    out_same = tsne_features({"net": net}, same, n=60)["net"]
    out_apart = tsne_features({"net": net}, apart, n=60)["net"]
    assert out_apart["domain_probe_acc"] > 0.95  # a brightness shift is linearly visible in the features
    assert out_same["domain_probe_acc"] < 0.7  # identical images: the probe can only guess
    for out in (out_same, out_apart):
        assert out["xy"].shape == (120, 2) and np.isfinite(out["xy"]).all()
        assert out["proxy_a_distance"] == pytest.approx(2 * (1 - 2 * (1 - out["domain_probe_acc"])))
