"""Part D beyond the course: spectral norm, hinge loss, R1, the moving average of G, conditional
BatchNorm, the projection discriminator, the strong preset and the second judge."""

import json

import pytest
import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.generate.conditioning import CondBatchNorm2d, CondBNGenerator, ProjectionDiscriminator
from cnnlab.ema import ema_copy, ema_decay, ema_update
from cnnlab.generate.networks import build_gan, count_parameters
from cnnlab.generate.steps import d_step, discriminator_loss, generator_loss, r1_penalty
from cnnlab.generate.train import GANConfig, config_from, preset_help, preset_settings, train_gan
from test_generate_helpers import one_thread, patched_judge, tiny_judge  # noqa: F401  (fixtures)

TINY = dict(dataset="mnist-embedded", ngf=8, ndf=8, subset=256, batch_size=64, eval_samples=100, sample_every=2,
            precision="fp32", second_judge=False)


def test_spectral_norm_bounds_every_layer_and_removes_batchnorm():
    torch.manual_seed(0)
    _, D = build_gan("dcgan", spectral_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    D.train()
    x = torch.randn(8, 1, 32, 32)
    for _ in range(30):  # power iterations run in train-mode forwards
        D(x)
    D.eval()
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    for m in convs:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.02)


def test_a_d_step_normalises_each_layer_once_for_both_batches():
    """One power iteration per layer and D step (the weights are cached across the real and the generated
    batch), and the cached weights carry the gradient: D is updated."""
    from torch.nn.utils.parametrizations import _SpectralNorm

    torch.manual_seed(0)
    _, D = build_gan("dcgan", spectral_norm=True)
    calls = []
    sn = [m for m in D.modules() if isinstance(m, _SpectralNorm)]
    for m in sn:
        m.register_forward_hook(lambda mod, args, out: calls.append(mod))
    before = [p.detach().clone() for p in D.parameters()]
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    d_step(D, opt, torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32), loss="hinge")
    assert len(sn) >= 4 and sorted(map(id, calls)) == sorted(map(id, sn))
    assert all(not torch.equal(a, b) for a, b in zip(before, D.parameters()))


def test_hinge_losses_on_known_logits():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    # D: mean(relu(1 − real)) + mean(relu(1 + fake)) = (0 + 0.5)/2 + (0 + 1.5)/2
    assert discriminator_loss(real, fake, "hinge").item() == pytest.approx(1.0)
    assert generator_loss(fake, "hinge").item() == pytest.approx(0.75)  # −mean(fake)
    with pytest.raises(ValueError, match="choose one of bce, hinge"):
        discriminator_loss(real, fake, "wasserstein")


class _LinearD(nn.Module):
    """D(x) = w·x: ∇ₓD = w for every image, so E‖∇ₓD‖² = ‖w‖² and ∂/∂w of γ/2·‖w‖² is γ·w."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(1 * 4 * 4, generator=torch.Generator().manual_seed(3)))

    def logits(self, x, y=None):
        return x.flatten(1) @ self.w


def test_r1_penalty_and_its_gradient_are_analytic():
    D = _LinearD()
    x = torch.randn(5, 1, 4, 4, requires_grad=True)
    assert r1_penalty(D.logits(x), x).item() == pytest.approx(D.w.pow(2).sum().item(), rel=1e-5)
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    grads = {}
    for r1 in (0.0, 2.0):
        D.w.grad = None
        opt = torch.optim.SGD(D.parameters(), lr=0.0)  # no move: only the gradient is compared
        d_step(D, opt, real, fake, r1=r1)
        grads[r1] = D.w.grad.clone()
    torch.testing.assert_close(grads[2.0] - grads[0.0], 2.0 * D.w.detach(), rtol=1e-4, atol=1e-5)


def test_ema_update_warm_up_and_buffers():
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 10 ** 6) == 0.999
    G = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    avg = ema_copy(G)
    assert not any(p.requires_grad for p in avg.parameters())
    before = [p.clone() for p in avg.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    G(torch.randn(4, 3))  # moves BatchNorm's running statistics and its counter
    ema_update(avg, G, 0.9)
    for a, b, p in zip(avg.parameters(), before, G.parameters()):
        torch.testing.assert_close(a, 0.9 * b + 0.1 * p)
    assert avg[1].num_batches_tracked.item() == 1  # integer buffers are copied, not averaged
    torch.testing.assert_close(avg[1].running_mean, 0.1 * G[1].running_mean)  # from zeros


def test_conditional_batchnorm_starts_as_batchnorm_and_then_depends_on_the_class():
    cbn = CondBatchNorm2d(4, 10)
    x = torch.randn(6, 4, 3, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.testing.assert_close(cbn(x, y), nn.functional.batch_norm(x, None, None, training=True))
    with torch.no_grad():
        cbn.gamma.weight[1].fill_(2.0)
        cbn.beta.weight[2].fill_(0.5)
    out, base = cbn(x, y), nn.functional.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(out[y == 1], 2.0 * base[y == 1])
    torch.testing.assert_close(out[y == 2], base[y == 2] + 0.5)
    G = CondBNGenerator(nz=4, ngf=4)
    G.eval()
    z = torch.randn(1, 4).repeat(2, 1)
    with torch.no_grad():
        G.norms[0].beta.weight[3].fill_(1.0)
        out = G(z, torch.tensor([0, 3]))  # the same z, two classes
    assert out.shape == (2, 1, 32, 32) and not torch.allclose(out[0], out[1])


def test_projection_discriminator_is_psi_plus_the_class_inner_product():
    torch.manual_seed(0)
    D = ProjectionDiscriminator(ndf=4)
    D.eval()
    x, y = torch.randn(3, 1, 32, 32), torch.tensor([0, 7, 7])
    phi = D.features(x)
    expected = D.psi(phi).view(-1) + (D.embed.weight[y] * phi.sum((2, 3))).sum(1)
    torch.testing.assert_close(D.logits(x, y), expected)
    D.logits(x, y).sum().backward()
    unused = [c for c in range(10) if c not in (0, 7)]
    assert D.embed.weight.grad[unused].abs().sum() == 0  # only the classes in the batch are pushed
    with pytest.raises(ValueError, match="needs the labels"):
        D.logits(x)


def test_strong_preset_keeps_the_course_size():
    for model in ("dcgan", "cdcgan"):
        cfg = config_from(GANConfig(model=model), **preset_settings("strong", model))
        G0, D0 = build_gan(model)
        G, D = build_gan(model, cond_arch=cfg.cond_arch, spectral_norm=cfg.spectral_norm)
        assert count_parameters(G) <= 1.5 * count_parameters(G0) and count_parameters(D) <= 1.5 * count_parameters(D0)
    with pytest.raises(CnnlabError, match="--cond-arch projection with --no-y-in-d"):
        build_gan("cdcgan", cond_arch="projection", cond_d=False)
    with pytest.raises(CnnlabError, match="--ema 1.0"):
        GANConfig(ema=1.0)
    with pytest.raises(CnnlabError, match="--loss"):
        GANConfig(loss="wgan")


def test_ema_run_samples_from_the_average_and_resumes_exactly(tmp_path):
    kw = dict(TINY, model="cdcgan", ema=0.9, loss="hinge", spectral_norm=True, r1=0.5, r1_every=2,
              cond_arch="projection")
    full = train_gan(GANConfig(**kw, epochs=2), out=tmp_path / "full", seed=0, judge=tiny_judge(), figures=False)
    ck = torch.load(full.root / "checkpoints" / "last.pt", weights_only=True)
    assert set(ck["modules"]) == {"G", "D", "G_ema"} and set(ck["optimizers"]) == {"G", "D"}
    assert full.metrics["ema"] is True
    # GANRun.G is the average: it equals the checkpoint's G_ema, not the raw G
    sd = full.G.state_dict()
    assert all(torch.equal(sd[k], ck["modules"]["G_ema"][k]) for k in sd)
    assert any(not torch.equal(sd[k], ck["modules"]["G"][k]) for k in sd)
    train_gan(GANConfig(**kw, epochs=1), out=tmp_path / "cut", seed=0, judge=tiny_judge(), figures=False)
    resumed = train_gan(GANConfig(**kw, epochs=2), out=tmp_path / "cut", seed=0, judge=tiny_judge(), resume=True,
                        figures=False)
    sr = resumed.G.state_dict()
    assert all(torch.equal(sd[k], sr[k]) for k in sd)
    assert (full.root / "steps.csv").read_text() == (resumed.root / "steps.csv").read_text()


def test_second_judge_is_another_network_and_is_reported(tmp_path, monkeypatch):
    import cnnlab.generate.train as train
    from cnnlab.generate.judge import SECOND_JUDGE

    assert SECOND_JUDGE["arch"] != "digitnet" and SECOND_JUDGE["seed"] != 0
    asked = []

    def fake_load(*a, second=False, **k):
        asked.append(second)
        return tiny_judge()

    monkeypatch.setattr(train, "load_judge", fake_load)
    res = train_gan(GANConfig(**{**TINY, "second_judge": True}, epochs=1), out=tmp_path / "r", seed=0,
                    judge=tiny_judge(), figures=False)
    assert asked == [True]
    m = json.loads((res.root / "metrics.json").read_text())
    assert {"final_judge2", "real_judge2", "judge2"} <= set(m)
    assert m["real_judge2"]["frechet"] < m["final_judge2"]["frechet"]  # real digits: the floor


def test_real_digits_give_the_conditional_accuracy_ceiling(tmp_path):
    """metrics["real"] of a cDCGAN holds the judge's accuracy on as many real training digits (the most a G
    reproducing them would reach); an unconditional run has no such number."""
    from cnnlab.generate.data import load_gan_data

    runs = {m: train_gan(GANConfig(**{**TINY, "model": m}, epochs=1), out=tmp_path / m, seed=0, judge=tiny_judge(),
                         figures=False) for m in ("cdcgan", "dcgan")}
    real = {m: json.loads((r.root / "metrics.json").read_text())["real"] for m, r in runs.items()}
    data = load_gan_data(TINY["dataset"], size=32, subset=TINY["subset"])
    pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:TINY["eval_samples"]]
    _, probs = tiny_judge()(data.train[pick])
    accuracy = float((probs.argmax(1) == data.labels[pick]).float().mean())
    assert 0 < accuracy < 1 and real["cdcgan"]["cond_acc"] == pytest.approx(accuracy)
    assert "cond_acc" not in real["dcgan"]


def test_cli_preset_and_flags_override_it(tmp_path, patched_judge):
    from cnnlab.cli import main

    out = tmp_path / "strong"
    assert main(["gan", "train", "--dry-run", "--preset", "strong", "--ema", "0", "--ngf", "8", "--ndf", "8",
                 "--lr-d", "1e-4", "--batch-size", "32", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["loss"] == "hinge" and cfg["spectral_norm"] is True and cfg["ema"] == 0.0
    # the preset's Adam, except what a flag set
    assert (cfg["beta1"], cfg["beta2"], cfg["lr_g"], cfg["lr_d"], cfg["batch_size"]) == (0.0, 0.9, 1e-3, 1e-4, 32)
    # the cDCGAN's preset keeps the course's learning rates and one-hot conditioning; a flag still wins
    out = tmp_path / "cstrong"
    assert main(["gan", "train", "--dry-run", "--preset", "strong", "--model", "cdcgan", "--ngf", "8", "--ndf", "8",
                 "--lr-g", "3e-4", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["cond_arch"], cfg["lr_d"], cfg["lr_g"], cfg["beta1"], cfg["ema"]) == ("concat", 2e-4, 3e-4, 0.0, 0.999)
    assert main(["gan", "train", "--dry-run", "--r1", "-1", "--out", str(tmp_path / "bad")]) == 2


def test_the_presets_variants_are_the_preset():
    """`gan sweep`'s strong variants train what `gan train --preset strong` trains, model by model."""
    from cnnlab.generate.studies import variant_config

    base = GANConfig()
    assert variant_config("strong", base) == config_from(base, **preset_settings("strong"))
    c = variant_config("cdcgan-strong", base)
    assert c == config_from(base, model="cdcgan", **preset_settings("strong", "cdcgan"))
    assert (c.lr_d, c.lr_g, c.cond_arch, c.loss, c.spectral_norm) == (base.lr_d, base.lr_g, "concat", "hinge", True)
    assert "for the cdcgan: lr-d 0.0002, lr-g 0.0005" in preset_help("strong")
    # `gan sweep --preset strong`: a variant that switches to the cDCGAN gets the cDCGAN's preset, as `gan train` does
    from cnnlab.generate.cli import _preset_per_model

    strong = config_from(base, **preset_settings("strong"))
    extra = _preset_per_model("strong", ["default", "ema", "cdcgan"], strong)
    assert extra == {"cdcgan": {"lr_d": base.lr_d, "lr_g": base.lr_g}}
    assert variant_config("cdcgan", strong, extra["cdcgan"]) == variant_config("cdcgan-strong", base)
    assert _preset_per_model("course", ["cdcgan"], base) == {}


def test_strong_text_follows_the_numbers_of_both_judges():
    from cnnlab.generate.lab_beyond import strong_text
    from cnnlab.report.claims import compare_seed_means

    c = compare_seed_means([10.0, 12.0, 11.0], [30.0, 33.0, 27.0])
    assert c.sign == -1 and c.margin == pytest.approx(1.96 * (1 / 3 + 9 / 3) ** 0.5)
    assert compare_seed_means([10.0], [30.0, 31.0]).sign == 0  # one seed: no claim from seed means
    good = {"final": [20.0, 22.0, 21.0], "final_judge2": [8.0, 9.0, 8.5]}
    course = {"final": [65.0, 70.0, 60.0], "final_judge2": [30.0, 28.0, 33.0]}
    assert strong_text(course, good, 0.2).startswith("The strong preset gives digits closer to the real ones on both")
    assert strong_text(good, course, 0.2).startswith("The strong preset is worse")
    assert strong_text(course, course, 0.2).startswith("No clear difference")
    mixed = {"final": good["final"], "final_judge2": course["final_judge2"]}
    text = strong_text(course, mixed, 0.2)
    assert text.startswith("The two judges disagree") and "digitnet (seed 0) says better" in text
    # one seed each: the relative margin decides
    assert strong_text({"final": [60.0], "final_judge2": [30.0]}, {"final": [50.0], "final_judge2": [25.0]},
                       0.25).startswith("No clear difference")
    assert strong_text({"final": [60.0], "final_judge2": [30.0]}, {"final": [40.0], "final_judge2": [20.0]},
                       0.25).startswith("The strong preset gives")


def test_ema_multi_tensor_update_equals_a_lerp_per_tensor_bit_for_bit():
    from cnnlab.generate.networks import Generator

    torch.manual_seed(0)
    G = Generator(ngf=8)
    avg = ema_copy(G)
    ref = [t.clone() for t in list(avg.parameters()) + list(avg.buffers())]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
    G(torch.randn(4, 100))  # BatchNorm statistics move too
    ema_update(avg, G, 0.999)
    src = list(G.parameters()) + list(G.buffers())
    for out, r, s in zip(list(avg.parameters()) + list(avg.buffers()), ref, src):
        expected = r.lerp(s.detach(), 1 - 0.999) if r.dtype.is_floating_point else s
        assert torch.equal(out, expected)
