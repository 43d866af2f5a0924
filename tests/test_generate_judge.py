"""The judge: Fréchet distance against closed forms, entropy, and the metrics on real digits
(which must score better than noise) and on real labelled digits (conditional accuracy)."""

import math

import numpy as np
import pytest
import torch

from cnnlab.generate.judge import (class_entropy, frechet_distance, gaussian_stats, judge_metrics,
                                   real_reference)
from test_generate_helpers import one_thread, tiny_judge  # noqa: F401  (fixture)


def test_frechet_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a = rng.normal(size=(5, 5))
    s = a @ a.T + np.eye(5)
    assert frechet_distance(mu1, s, mu1, s) == pytest.approx(0, abs=1e-8)
    # equal covariances: only the means count
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(((mu1 - mu2) ** 2).sum(), rel=1e-8)
    # diagonal covariances: Σ (σ1 − σ2)² + ‖Δμ‖²
    d1, d2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    assert frechet_distance(np.zeros(3), d1, np.ones(3), d2) == pytest.approx(3 + 1 + 0 + 4, rel=1e-10)
    # symmetric in its arguments
    t = rng.normal(size=(5, 5))
    t = t @ t.T
    assert frechet_distance(mu1, s, mu2, t) == pytest.approx(frechet_distance(mu2, t, mu1, s), rel=1e-8)


def test_frechet_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T, b @ b.T  # non-commuting covariances
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_gaussian_stats():
    f = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = gaussian_stats(f)
    assert np.allclose(mu, [2, 4]) and np.allclose(sigma, np.cov(f.numpy(), rowvar=False))
    with pytest.raises(ValueError):
        gaussian_stats(torch.zeros(1, 3))


def test_class_entropy():
    assert class_entropy(np.ones(10)) == pytest.approx(math.log2(10))
    assert class_entropy([0, 7, 0]) == 0.0
    assert class_entropy([1, 1, 0, 0]) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def digits():
    from cnnlab.data import load_dataset
    from cnnlab.generate.data import resize_uint8, to_gan_range

    test = load_dataset("mnist-embedded", "test")
    train = load_dataset("mnist-embedded", "train")
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:500]
    # the GAN pipeline's images: 32×32, in [−1, 1]
    return (resize_uint8(test.images, 32), to_gan_range(resize_uint8(train.images[keep], 32)), train.labels[keep])


def test_real_digits_score_better_than_noise(digits):
    judge = tiny_judge()
    test, real, _ = digits
    ref = real_reference(judge, test)
    noise = torch.rand(500, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    blank = -torch.ones(500, 1, 32, 32)  # the most collapsed "generator": one black image
    m_real, m_noise, m_blank = (judge_metrics(judge, x, ref) for x in (real, noise, blank))
    assert m_real["frechet"] < m_noise["frechet"] / 5 and m_real["frechet"] < m_blank["frechet"] / 5
    assert m_real["class_entropy"] > 3.0  # ~uniform over the 10 digits (max 3.32 bits)
    assert m_blank["class_entropy"] == 0.0  # identical images: one class
    assert m_real["confidence"] > m_noise["confidence"]
    assert sum(m_real["class_hist"]) == 500


def test_conditional_accuracy_on_real_labelled_digits(digits):
    """With the true labels the conditional accuracy is exactly the judge's accuracy on those digits;
    with labels shifted by one class it is the rate at which the judge predicts the next class."""
    from cnnlab.train import accuracy

    judge = tiny_judge()
    _, real, labels = digits
    m = judge_metrics(judge, real, None, labels)
    u8 = ((real + 1) * 127.5).round().to(torch.uint8)
    assert m["cond_acc"] == pytest.approx(accuracy(judge.bundle.model, u8, labels, judge.bundle.preprocess), abs=1e-6)
    assert m["cond_acc"] > 0.8
    assert judge_metrics(judge, real, None, (labels + 1) % 10)["cond_acc"] < 0.1


def test_non_digit_data_keeps_only_the_distance(digits):
    judge = tiny_judge()
    test, real, _ = digits
    rgb = real.expand(-1, 3, -1, -1)  # three channels: the judge sees grey
    m = judge_metrics(judge, rgb, real_reference(judge, test), digits=False)
    assert set(m) == {"n", "frechet"}
