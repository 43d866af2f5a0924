"""Shared fixtures of the Part D tests (no tests here): a tiny judge trained in seconds, installed
in place of the cached 8-epoch digit classifier so CLI and lab smoke tests stay fast."""

import pytest
import torch


def make_tiny_judge():
    from cnnlab.data import load_dataset
    from cnnlab.generate.judge import judge_from_bundle
    from cnnlab.models import build_model
    from cnnlab.train import accuracy, train_classifier

    train = load_dataset("mnist-embedded", "train")
    test = load_dataset("mnist-embedded", "test")
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:1500]
    torch.manual_seed(0)
    bundle = build_model("digitnet", "NONE")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is as fast, and far faster on a busy machine
    try:
        train_classifier(bundle.model, train.images[keep], train.labels[keep], preprocess=bundle.preprocess,
                         epochs=2, lr=2e-3, batch_size=64, seed=0)
    finally:
        torch.set_num_threads(threads)
    bundle.model.eval()
    bundle.extra["test_acc"] = accuracy(bundle.model, test.images, test.labels, bundle.preprocess)
    bundle.weights_id = "tiny-test-judge"
    return judge_from_bundle(bundle)


_JUDGE = []


def tiny_judge():
    if not _JUDGE:
        _JUDGE.append(make_tiny_judge())
    return _JUDGE[0]


@pytest.fixture(autouse=True)
def one_thread():
    """GAN steps on tiny nets: one thread is as fast, and far faster when the machine is busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def patched_judge(monkeypatch):
    """Every Part D entry point gets the tiny judge instead of training the shared one."""
    import cnnlab.generate.lab as lab
    import cnnlab.generate.train as train

    j = tiny_judge()
    monkeypatch.setattr(train, "load_judge", lambda *a, **k: j)
    monkeypatch.setattr(lab, "load_judge", lambda *a, **k: j)
    return j
