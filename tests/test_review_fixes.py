"""Faults a code review found, each with the test that failed before its fix: random networks sharing
cached features, the scikit-learn transformer's memo and fitting, autocast around GAN updates, models
kept alive by a cache, and the allocator's scope."""

from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch.optim.optimizer import register_optimizer_step_pre_hook

from cnnlab.data import TensorImageSet
from cnnlab.models import build_model
from cnnlab.transfer.features import extract_features

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _digits(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorImageSet(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
                          torch.arange(n) % 2, ["a", "b"], f"rand{seed}")


# --------------------------------------------------------------------------- 1. the feature cache
def test_two_random_networks_do_not_share_cached_features(tmp_path):
    """Every random network is "NONE"; the cache key used to hold nothing else, so the second random
    network got the first one's features back from the cache."""
    ds = _digits()
    torch.manual_seed(1)
    a = build_model("digitnet", "NONE")
    torch.manual_seed(2)
    b = build_model("digitnet", "NONE")
    fa = extract_features(a, ds, ["relu_fc1"], cache=tmp_path, progress=None).arrays["relu_fc1"]
    fb = extract_features(b, ds, ["relu_fc1"], cache=tmp_path, progress=None).arrays["relu_fc1"]
    fresh = extract_features(b, ds, ["relu_fc1"], use_cache=False, progress=None).arrays["relu_fc1"]
    assert not np.allclose(fa, fb)
    np.testing.assert_array_equal(np.asarray(fb), np.asarray(fresh))
    assert a.weights == b.weights == "NONE" and a.weights_id != b.weights_id


def test_the_same_random_weights_have_the_same_identity():
    torch.manual_seed(3)
    a = build_model("digitnet", "NONE")
    torch.manual_seed(3)
    b = build_model("digitnet", "NONE")
    assert a.weights_id == b.weights_id and a.weights_id.startswith("NONE-")


# --------------------------------------------------------------------------- 2. CNNFeatures
def _cnn_features(**kw):
    from cnnlab.transfer.sklearn_api import CNNFeatures

    return CNNFeatures("digitnet", _weights_file(), "relu_fc1", **kw)


_WEIGHTS = {}


def _weights_file():
    if "path" not in _WEIGHTS:
        import tempfile

        path = tempfile.mkdtemp(prefix="cnnlab-test-") + "/digitnet.pth"
        torch.manual_seed(0)
        torch.save(build_model("digitnet", "NONE").model.state_dict(), path)
        _WEIGHTS["path"] = path
    return _WEIGHTS["path"]


def test_transformers_with_another_normalisation_give_other_features():
    X = _digits().images.numpy()
    plain = _cnn_features(mean=(0.5,), std=(0.5,)).fit(X).transform(X)
    other = _cnn_features(mean=(0.1,), std=(0.3,)).fit(X).transform(X)
    assert not np.allclose(plain, other)
    again = _cnn_features(mean=(0.5,), std=(0.5,)).fit(X).transform(X)
    np.testing.assert_array_equal(plain, again)


def test_transform_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        _cnn_features().transform(_digits().images.numpy())


def test_the_feature_memo_is_bounded():
    from cnnlab.transfer import sklearn_api

    memo = sklearn_api._LRU(max_bytes=1000)
    for i in range(50):
        memo.put(i, np.zeros(25, np.float32), 100)  # 100 bytes each
    assert len(memo) == 10 and memo.bytes == 1000
    assert memo.get(0) is None and memo.get(49) is not None
    assert sklearn_api._ROWS.max_bytes and sklearn_api._BUNDLES.max_items


# --------------------------------------------------------------------------- 3. GAN updates outside autocast
def test_gan_backward_and_optimiser_steps_run_outside_autocast(tmp_path, monkeypatch):
    """Under bf16 autocast, only the forward passes may run in it; the optimiser steps (and the
    backward passes before them) run in full precision, as DANN's do."""
    from cnnlab.generate import steps
    from cnnlab.generate.train import GANConfig, train_gan

    monkeypatch.setattr("cnnlab.generate.train.use_bf16", lambda precision, device: True)
    seen = []
    real_backward = torch.Tensor.backward

    def backward(self, *a, **k):
        seen.append(("backward", torch.is_autocast_enabled("cpu")))
        return real_backward(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    hook = register_optimizer_step_pre_hook(lambda opt, a, k: seen.append(("step", torch.is_autocast_enabled("cpu"))))
    forwards = []
    real_logits = steps._logits
    monkeypatch.setattr(steps, "_logits", lambda *a: forwards.append(torch.is_autocast_enabled("cpu")) or real_logits(*a))
    try:
        cfg = GANConfig(model="dcgan", dataset="mnist-embedded", epochs=1, batch_size=16, subset=32, nz=8,
                        ngf=8, ndf=8, eval_samples=16, judge_epochs=1, precision="bf16")
        train_gan(cfg, out=tmp_path, seed=0, device="cpu", figures=False)
    finally:
        hook.remove()
    assert {kind for kind, _ in seen} == {"backward", "step"}
    assert not any(on for _, on in seen), seen
    assert forwards and all(forwards)  # the forward passes still ran under autocast


# --------------------------------------------------------------------------- 4. no cache keeps models alive
def test_listing_a_models_layers_does_not_keep_the_model_alive():
    from cnnlab.models.layers import node_names

    bundle = build_model("digitnet", "NONE")
    names = node_names(bundle.model)
    assert "x" in names and len(names) > 5
    ref = weakref.ref(bundle.model)
    del bundle
    gc.collect()
    assert ref() is None


# --------------------------------------------------------------------------- 5. the allocator's scope
@pytest.mark.parametrize("argv, tuned", [
    (["datasets"], False),
    (["report", "/nonexistent/run"], False),
    (["layers", "--arch", "digitnet"], False),
    (["transfer", "--arch", "digitnet", "--weights", "NONE", "--C", "bad"], True),
    (["lab", "--parts", "Z"], True),
])
def test_only_training_and_extraction_commands_tune_malloc(argv, tuned, monkeypatch, capsys):
    from cnnlab import allocator
    from cnnlab.cli import main

    calls = []
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda: calls.append(1) or True)
    main(argv)
    assert bool(calls) == tuned


class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retain_freed_memory_sets_malloc_once_per_process(monkeypatch):
    from cnnlab import allocator

    libc = _FakeLibc()
    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert allocator.retain_freed_memory() is True
    assert allocator.retain_freed_memory() is True
    assert libc.calls == [(allocator.M_MMAP_MAX, 0), (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD_BYTES)]


def test_retain_freed_memory_is_false_without_glibcs_mallopt(monkeypatch):
    from cnnlab import allocator

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: object())  # musl: no mallopt
    assert allocator.retain_freed_memory() is False


def test_forced_bf16_on_a_cpu_without_native_bf16_warns_once(monkeypatch, caplog):
    from cnnlab import precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(precision, "_warned_emulated", False)
    cpu = torch.device("cpu")
    with caplog.at_level("WARNING", logger="cnnlab"):
        assert precision.use_bf16("bf16", cpu) and precision.use_bf16("bf16", cpu)
        assert not precision.use_bf16("auto", cpu)
    assert [r.message.count("emulated") for r in caplog.records] == [1]
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    assert precision.use_bf16("auto", cpu)
