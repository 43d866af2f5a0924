"""VADA and DIRT-T (Part C beyond the course): conditional entropy, virtual adversarial training, instance-normalised
inputs, the moving-average classifier, and the method's place in ``cnnlab adapt``."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from cnnlab.adapt import dann as dann_mod
from cnnlab.adapt.dann import AdaptConfig, course_config, dann_losses, train_adapt
from cnnlab.adapt.domains import preprocess
from cnnlab.adapt.networks import DANNNet
from cnnlab.adapt.vada import conditional_entropy, kl_from_logits, vada_losses, vat_perturbation
from test_adapt_dann import _grads, tiny_domains, tiny_step_inputs

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_conditional_entropy_and_kl_on_known_logits():
    assert conditional_entropy(torch.zeros(4, 10)).item() == pytest.approx(math.log(10), rel=1e-6)
    assert conditional_entropy(torch.tensor([[50.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)
    p = torch.tensor([[2.0, 0.0]])
    q = torch.tensor([[0.0, 2.0]], requires_grad=True)
    # KL(p‖q) for p = (a, 1−a), q = (1−a, a): (2a − 1)·log(a/(1−a))
    a = 1 / (1 + math.exp(-2))
    assert kl_from_logits(p, q).item() == pytest.approx((2 * a - 1) * math.log(a / (1 - a)), rel=1e-5)
    assert kl_from_logits(p, p).item() == pytest.approx(0.0, abs=1e-7)
    p_leaf = p.clone().requires_grad_(True)
    kl_from_logits(p_leaf, q).backward()
    assert p_leaf.grad is None and q.grad.abs().sum() > 0  # p is the fixed target


class _Softmax(nn.Module):
    """p(y|x) = softmax(W x): small enough to search the worst direction by brute force."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)) * 2)

    def forward(self, x):
        return x.flatten(1) @ self.W.t()


def test_vat_perturbation_has_the_radius_and_is_one_power_iteration_towards_the_worst_direction():
    net = _Softmax()
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    radius = 0.05  # small: the KL is its quadratic form ½ rᵀHr there, with H = Wᵀ(diag p − ppᵀ)W
    r = vat_perturbation(net, x, radius, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(r.norm(dim=1), torch.full((6,), radius), rtol=1e-5)
    assert net.W.grad is None  # only the input gradient was taken
    # H d lies in W's row space: no component along the direction that leaves every logit unchanged
    null = torch.linalg.svd(net.W.detach(), full_matrices=True).Vh[-1]
    assert (r @ null).abs().max() < 1e-4 * radius
    start = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))  # the random start it iterated from
    start = radius * start / start.norm(dim=1, keepdim=True)
    with torch.no_grad():
        clean = net(x)
        for i in range(6):  # one power step raises the Rayleigh quotient of a PSD H: a larger KL than the start
            kl_r = kl_from_logits(clean[i:i + 1], net(x[i:i + 1] + r[i:i + 1])).item()
            kl_start = kl_from_logits(clean[i:i + 1], net(x[i:i + 1] + start[i:i + 1])).item()
            assert kl_r > kl_start


def test_instance_normalised_net_ignores_each_images_colour_and_contrast():
    torch.manual_seed(0)
    net = DANNNet(input_norm=True).eval()
    x = torch.rand(4, 3, 28, 28)
    scale = torch.tensor([0.5, 2.0, 3.0]).view(1, 3, 1, 1)
    shift = torch.tensor([0.3, -1.0, 0.7]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x * scale + shift), net(x), rtol=1e-3, atol=1e-3)
        torch.manual_seed(0)
        plain = DANNNet().eval()  # the same weights (the normalisation has no parameters), no normalisation
        torch.testing.assert_close(plain.features[0].weight, net.features[1].weight)
        assert not torch.allclose(plain(x * scale + shift), plain(x), atol=1e-3)


def test_vada_losses_are_danns_plus_the_target_terms():
    net, xs, ys, xt = tiny_step_inputs()
    ref = dann_losses(net, xs, ys, xt, 0.5)
    out = vada_losses(net, xs, ys, xt, 0.5, radius=3.5, target_weight=0.25, generator=torch.Generator().manual_seed(0))
    for k in ("class_loss", "domain_loss", "class_acc", "domain_acc"):  # the one pass computes DANN's terms
        torch.testing.assert_close(out[k], ref[k], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        logits_t = net(xt)
    torch.testing.assert_close(out["target_entropy_loss"], conditional_entropy(logits_t), rtol=1e-5, atol=1e-6)
    assert out["target_vat_loss"].item() > 0
    # VAT's clean logits are the main pass's (no separate clean pass). Not compared with one: at ξ = 1e-6 the
    # power iteration works at fp32's rounding limit, and logits of another batch shape turn its direction
    main = net(torch.cat([xs, xt]))[len(xs):].detach()
    r = vat_perturbation(net, xt, 3.5, clean=main, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(out["target_vat_loss"], kl_from_logits(main, net(xt + r)), rtol=1e-5, atol=1e-8)
    expect = out["class_loss"] + out["domain_loss"] + 0.25 * (out["target_entropy_loss"] + out["target_vat_loss"])
    torch.testing.assert_close(out["total"], expect)
    with_src = vada_losses(net, xs, ys, xt, 0.5, radius=3.5, target_weight=0.25, source_vat_weight=1.0,
                           generator=torch.Generator().manual_seed(0))
    assert with_src["source_vat_loss"].item() > 0
    torch.testing.assert_close(with_src["total"], expect + with_src["source_vat_loss"])


def test_confusion_adversary_trains_the_head_on_true_domains_and_the_features_on_flipped_ones():
    """Shu et al.'s domain confusion: ∂total/∂head = ∂BCE(head(f), d)/∂head with f held fixed;
    ∂total/∂features = ∂[CE + λ·BCE(head(f), 1 − d)]/∂features with the head held fixed."""
    import torch.nn.functional as F

    net, xs, ys, xt = tiny_step_inputs()
    lam = 0.7
    out = vada_losses(net, xs, ys, xt, lam, radius=3.5, target_weight=0.0, adversary="confusion",
                      generator=torch.Generator().manual_seed(0))
    got = _grads(net, out["total"])
    d = torch.cat([torch.ones(len(xs)), torch.zeros(len(xt))])
    f = net.features(torch.cat([xs, xt]))
    head = _grads(net, F.binary_cross_entropy_with_logits(net.domain(f.detach()).squeeze(1), d))
    f = net.features(torch.cat([xs, xt]))
    feats = _grads(net, F.cross_entropy(net.classifier(f[:len(xs)]), ys)
                   + lam * F.binary_cross_entropy_with_logits(net.domain(f).squeeze(1), 1 - d))
    for k, g in got.items():
        want = head[k] if k.startswith("domain.") else feats[k]
        torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-6, msg=k)
    assert all(got[k].abs().sum() > 0 for k in got if k.startswith(("domain.", "features.")))
    # the head's own loss is the GRL variant's domain loss: the same forward, only the gradients differ
    grl = vada_losses(net, xs, ys, xt, lam, radius=3.5, target_weight=0.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out["domain_loss"], grl["domain_loss"])
    assert "confusion_loss" not in grl
    with pytest.raises(Exception, match="choose one of grl, confusion"):
        AdaptConfig(method="vada", adversary="wgan")


def _vada(**kw):
    return replace(course_config("vada", epochs=2, batch_size=16, dev_samples=16), **kw)


def test_vada_trains_the_average_reports_domain_accuracy_and_resumes_exactly(tmp_path, interrupt_at):
    d = tiny_domains()
    cfg = _vada()
    assert cfg.optimizer == "adam" and cfg.input_norm and cfg.ema == 0.998
    assert cfg.domain_weight == 1.0 and cfg.target_weight == 0.01  # λ_d chosen on the development pair
    full = train_adapt(d, cfg, out=tmp_path / "a")
    assert [r["epoch"] for r in full.history] == [1, 2]
    assert {"target_entropy_loss", "target_vat_loss", "domain_acc", "target_test_acc"} <= set(full.history[-1])
    assert full.model.input_norm and not any(p.requires_grad for p in full.model.parameters())  # the average
    saved = torch.load(full.epoch_weights[2], weights_only=True)
    for k, v in full.model.state_dict().items():  # what is evaluated and kept is the average
        assert torch.equal(saved[k], v), k
    assert full.load_epoch(2).input_norm
    restore = interrupt_at(dann_mod, "vada_losses", 4)  # 3 steps per epoch: the first step of epoch 2
    with pytest.raises(KeyboardInterrupt):
        train_adapt(d, cfg, out=tmp_path / "b")
    restore()
    resumed = train_adapt(d, cfg, out=tmp_path / "b", resume=True)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_source_length_epochs_cycle_a_small_target_set(tmp_path, monkeypatch):
    """epoch_length="source": one pass over the source, a 20-image target set drawn again and again (every
    image in each pass); the course's "shorter" epoch (the default) stops after 20 // 8 = 2 steps."""
    from cnnlab.adapt.domains import DomainPair
    from test_adapt_dann import _set

    d = tiny_domains(48)
    d = DomainPair(d.source_train, d.source_val, d.source_test, _set(20, 3, 3, "t"), d.target_test, "s", "t")
    seen = []
    real = dann_mod.vada_losses

    def spy(net, xs, ys, xt, *a, **kw):
        seen.append(xt.clone())
        return real(net, xs, ys, xt, *a, **kw)

    monkeypatch.setattr(dann_mod, "vada_losses", spy)
    train_adapt(d, _vada(epochs=1, batch_size=8, epoch_length="source"), out=tmp_path / "a")
    assert len(seen) == 48 // 8  # source steps, not the target's 2
    images = preprocess(d.target_train.images)
    rows = [int((images - x).flatten(1).abs().sum(1).argmin()) for batch in seen for x in batch]
    assert len(rows) == 48 and all(len(set(rows[k:k + 16])) == 16 for k in (0, 16, 32))  # passes of 16 distinct
    assert len(set(rows)) > 16  # each pass a new permutation: images left out of one come back in another
    seen.clear()
    train_adapt(d, _vada(epochs=1, batch_size=8), out=tmp_path / "b")
    assert len(seen) == 20 // 8
    from cnnlab.adapt.protocol import ProtocolConfig
    from cnnlab.cli import build_parser

    args = build_parser().parse_args(["adapt", "--epoch-length", "source"])
    assert ProtocolConfig(epoch_length=args.epoch_length).config_for("vada").epoch_length == "source"
    assert ProtocolConfig(epoch_length="source").config_for("source_only").epoch_length == "shorter"
    with pytest.raises(Exception, match="choose one of shorter, source"):
        AdaptConfig(method="vada", epoch_length="target")


def test_bad_vada_settings_are_clear_errors():
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="choose one of sgd, adam"):
        AdaptConfig(method="vada", optimizer="rmsprop")
    with pytest.raises(CnnlabError, match="--ema"):
        AdaptConfig(method="vada", ema=1.0)


def test_cli_protocol_and_course_config_share_vadas_defaults():
    """One set of VADA settings: `cnnlab adapt`'s flags, the protocol and course_config agree."""
    from cnnlab.adapt.protocol import ProtocolConfig
    from cnnlab.cli import build_parser

    args = build_parser().parse_args(["adapt", "--methods", "dann,vada"])
    from_cli = {"lr": args.vada_lr, "domain_weight": args.vada_domain_weight, "adversary": args.vada_adversary,
                "target_weight": args.vada_target_weight, "vat_radius": args.vat_radius}
    cfg = ProtocolConfig().config_for("vada")
    from_protocol = {"lr": cfg.lr.lr0, "domain_weight": cfg.domain_weight, "adversary": cfg.adversary,
                     "target_weight": cfg.target_weight, "vat_radius": cfg.vat_radius}
    expected = {**dann_mod.VADA_DEFAULTS, "lr": dann_mod.VADA_DEFAULTS["lr"].lr0}
    assert from_cli == from_protocol == {k: expected[k] for k in from_cli}
    assert cfg.input_norm and cfg.optimizer == "adam" and cfg.epochs == course_config("dann").epochs


def test_dirtt_losses_teacher_term_vanishes_at_the_teacher_and_the_total_adds_up():
    from cnnlab.adapt.dirtt import RefineConfig, dirtt_losses

    torch.manual_seed(0)
    net = DANNNet(input_norm=True)
    xt = preprocess(tiny_domains(8).target_train.images[:8])
    cfg = RefineConfig(teacher_weight=0.3, target_weight=0.2, precision="fp32")
    out = dirtt_losses(net, net, xt, cfg, generator=torch.Generator().manual_seed(0))
    assert out["teacher_kl"].item() == pytest.approx(0.0, abs=1e-6)  # the student is the teacher
    torch.testing.assert_close(out["total"], 0.3 * out["teacher_kl"]
                               + 0.2 * (out["target_entropy_loss"] + out["target_vat_loss"]))
    other = DANNNet(input_norm=True)
    assert dirtt_losses(net, other, xt, cfg)["teacher_kl"].item() > 0


def test_dirtt_rounds_train_on_the_target_only_and_resume_exactly(tmp_path, interrupt_at):
    from cnnlab.adapt import dirtt as dirtt_mod
    from cnnlab.adapt.dirtt import RefineConfig, refine

    torch.manual_seed(0)
    start = DANNNet(input_norm=True)
    d = tiny_domains()
    cfg = RefineConfig(rounds=2, batch_size=16, precision="fp32")
    rows = refine(start, d, cfg, out=tmp_path / "a", name="r")
    assert [r["round"] for r in rows] == [0, 1, 2] and all("target_test_acc" in r for r in rows)
    w1 = torch.load(tmp_path / "a" / "r" / "round1.pt", weights_only=True)
    assert any(not torch.equal(w1[k], v) for k, v in start.state_dict().items())  # round 1 moved the model
    # the source's training images are never read: garbage there changes nothing
    d2 = replace(d, source_train=replace(d.source_train, images=torch.zeros_like(d.source_train.images)))
    rows2 = refine(start, d2, cfg, out=tmp_path / "c", name="r")
    w2 = torch.load(tmp_path / "c" / "r" / "round2.pt", weights_only=True)
    for k, v in torch.load(tmp_path / "a" / "r" / "round2.pt", weights_only=True).items():
        assert torch.equal(w2[k], v), k
    assert [r["target_test_acc"] for r in rows2] == [r["target_test_acc"] for r in rows]
    restore = interrupt_at(dirtt_mod, "dirtt_losses", 5)  # 3 steps a round: the second step of round 2
    with pytest.raises(KeyboardInterrupt):
        refine(start, d, cfg, out=tmp_path / "b", name="r")
    restore()
    resumed = refine(start, d, cfg, out=tmp_path / "b", name="r", resume=True)
    wb = torch.load(tmp_path / "b" / "r" / "round2.pt", weights_only=True)
    for k, v in torch.load(tmp_path / "a" / "r" / "round2.pt", weights_only=True).items():
        assert torch.equal(wb[k], v), k
    assert [r["target_test_acc"] for r in resumed] == [r["target_test_acc"] for r in rows]
