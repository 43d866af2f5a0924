"""Study functions that only ran inside dry-run labs: Part A's learning curve, Part B's attack transfer
between two different models and its keep-the-salient-pixels check, each on a property it must have."""

from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from cnnlab.explain.attacks import fgsm
from cnnlab.explain.metrics import keep_salient, transfer_matrix
from cnnlab.models import build_model
from cnnlab.models.registry import ModelBundle
from cnnlab.runs import Run
from cnnlab.transfer import study
from cnnlab.transfer.classify import svm_study
from cnnlab.transfer.features import extract_features

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# --------------------------------------------------------------------------- Part A: the learning curve
def test_learning_curve_scores_each_labelled_budget_as_a_fresh_study(tmp_path, monkeypatch):
    """Each point is the SVM study on exactly k images per class (the seeded subset), scored on the
    whole test split; from scratch gets the same number of optimisation steps at every size."""
    torch.manual_seed(0)
    bundle = build_model("digitnet", "NONE")
    cfg = study.TransferConfig(dataset="digits", arch="digitnet", weights="NONE", layers=("relu_fc1",), Cs=(1.0,),
                               cv=3, input_transform="digits_as_mnist")
    epochs_seen = {}

    def fake_scratch(arch, images, labels, *a, epochs, **k):  # the from-scratch arm: record, don't train
        epochs_seen[len(images)] = epochs
        return type("S", (), {"history": [{"test_acc": 0.5}]})

    monkeypatch.setattr(study, "from_scratch", fake_scratch)
    with Run.create(tmp_path / "run", "test", {}, 0) as run:
        rows = study.learning_curve(bundle, cfg, run, [2, 4], scratch_epochs=2)
    assert [(r["per_class"], r["method"].split()[0]) for r in rows] == [(2, "pretrained"), (2, "same"),
                                                                        (4, "pretrained"), (4, "same")]
    # the SVM points, recomputed here from the same seeded subsets
    from cnnlab.data import load_dataset

    full = load_dataset("digits", "train").materialize()
    test = load_dataset("digits", "test").materialize()
    tf = study.INPUT_TRANSFORMS["digits_as_mnist"]
    fte = extract_features(bundle, test, ["relu_fc1"], input_transform=tf, progress=None)
    for k, row in zip((2, 4), rows[::2]):
        sub = study.few_per_class(full, k, 0)
        assert sorted(torch.bincount(sub.labels).tolist()) == [k] * 10
        ftr = extract_features(bundle, sub, ["relu_fc1"], input_transform=tf, progress=None)
        s = svm_study(ftr.arrays, fte.arrays, ftr.labels, fte.labels, full.classes, layers=["relu_fc1"], Cs=[1.0],
                      cv=min(3, k), seed=0)
        assert row["test_acc"] == s.test_acc
    # the same 2 x 320 images seen at every size: 20 images for 32 epochs, 40 images for 16
    assert epochs_seen == {20: 32, 40: 16}
    assert (tmp_path / "run" / "learning_curve.csv").exists()


# --------------------------------------------------------------------------- Part B: attack transfer
class _ConstantClass(nn.Module):
    """A "network" that answers class ``c`` whatever the image."""

    def __init__(self, c: int, classes: int = 10):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))
        with torch.no_grad():
            self.bias[c] = 5.0

    def forward(self, x):
        return self.bias.expand(len(x), -1) + 0 * x.flatten(1).sum(1, keepdim=True)


def _bundle(model, like: ModelBundle) -> ModelBundle:
    return replace(like, model=model.eval(), arch="constant", weights="NONE", weights_id="constant")


def test_attack_transfer_between_two_different_models():
    torch.manual_seed(0)
    a = build_model("digitnet", "NONE")
    images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        clean = a.model(a.preprocess(images)).argmax(1)
    target = (clean + 1) % 10
    res = fgsm(a, images, eps=0.5, labels=clean, targets=target)
    assert int(res.success.sum()) > 0  # something to transfer
    always_target = _bundle(_ConstantClass(int(target[res.success][0])), a)
    never = _bundle(_ConstantClass(int(clean[0])), a)
    rows = transfer_matrix({"A": (a, res)}, {"A": a, "B": never})
    row = rows[0]
    assert row["n_fooled"] == int(res.success.sum())
    assert row["A"] == pytest.approx(1.0)  # the images fool the model they were made on
    assert row["A clean"] == pytest.approx(0.0)  # and the clean images do not reach the target on it
    ok = res.success
    want_b = float((target[ok] == int(clean[0])).float().mean())  # B answers clean[0], whatever it is shown
    assert row["B"] == pytest.approx(want_b) and row["B clean"] == pytest.approx(want_b)
    # a model that always predicts the one target of a single successful image transfers "everything"
    rows = transfer_matrix({"A": (a, res)}, {"C": always_target})
    hits = (target[ok] == int(target[ok][0])).float().mean()
    assert rows[0]["C"] == pytest.approx(float(hits))


# --------------------------------------------------------------------------- Part B: keep the salient pixels
class _ReadsFourPixels(nn.Module):
    """Class scores from four fixed pixels only: the rest of the image cannot matter."""

    PIXELS = ((3, 5), (10, 20), (14, 14), (25, 2))

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(len(self.PIXELS), 10, generator=g))

    def forward(self, x):
        v = torch.stack([x[:, 0, i, j] for i, j in self.PIXELS], 1)
        return v @ self.w


def test_keeping_the_salient_pixels_keeps_the_prediction_and_random_pixels_do_not():
    like = build_model("digitnet", "NONE")
    b = _bundle(_ReadsFourPixels(), like)
    images = torch.randint(1, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    maps = torch.zeros(32, 28, 28)
    for i, j in _ReadsFourPixels.PIXELS:
        maps[:, i, j] = 1.0  # the true saliency: the pixels the model reads
    out = keep_salient(b, images, maps, fraction=0.01)  # 8 pixels kept of 784
    assert out["kept_salient"] == 1.0
    assert out["kept_random"] < 0.5  # random 1% of the pixels rarely holds the four the model reads
    full = keep_salient(b, images, maps, fraction=1.0)
    assert full == {"kept_salient": 1.0, "kept_random": 1.0}  # nothing removed: nothing changes
