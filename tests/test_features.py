"""Feature extraction: in-place safety, one pass for many layers, cache, sklearn API, SVM selection."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from cnnlab.data import TensorImageSet
from cnnlab.models import build_model
from cnnlab.transfer.classify import svm_study
from cnnlab.transfer.features import extract_features, make_extractor
from cnnlab.transfer.sklearn_api import CNNFeatures


class InplaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.relu = nn.ReLU(inplace=True)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.relu(self.fc(x)))


def test_extractor_copies_before_an_inplace_relu_overwrites():
    torch.manual_seed(0)
    net = InplaceNet().eval()
    x = torch.randn(5, 4)
    outs = make_extractor(net, ["fc", "relu", "out"])(x)
    expected_fc = net.fc(x)
    assert (expected_fc < 0).any()  # the test is meaningful: the ReLU would change these values
    assert torch.allclose(outs["fc"], expected_fc)  # pre-ReLU values survive the in-place ReLU
    assert torch.allclose(outs["relu"], expected_fc.clamp_min(0))
    assert torch.allclose(outs["out"], net(x))


def _digits(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorImageSet(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
                          torch.arange(n) % 3, ["a", "b", "c"], f"rand{seed}")


def test_many_layers_in_one_pass_equal_single_layer_passes_and_are_l2_normalised(tmp_path):
    b = build_model("digitnet", "NONE")
    ds = _digits()
    together = extract_features(b, ds, ["fc1", "relu_fc1", "conv"], cache=tmp_path / "a", progress=None)
    for layer in ("fc1", "relu_fc1", "conv"):
        alone = extract_features(b, ds, [layer], use_cache=False, progress=None)
        np.testing.assert_allclose(together.arrays[layer], alone.arrays[layer], atol=1e-6)
        np.testing.assert_allclose(np.linalg.norm(together.arrays[layer], axis=1), 1.0, atol=1e-5)
    assert (np.asarray(together.arrays["fc1"]) < 0).any()  # fc1 is the pre-ReLU layer, not overwritten


def test_cache_is_reused_and_leaves_no_partial_files(tmp_path):
    b = build_model("digitnet", "NONE")
    ds = _digits()
    first = extract_features(b, ds, ["relu_fc1", "logits"], cache=tmp_path, progress=None)
    assert first.cached_layers == []
    second = extract_features(b, ds, ["relu_fc1", "conv"], cache=tmp_path, progress=None)
    assert second.cached_layers == ["relu_fc1"]  # only the new layer is extracted
    np.testing.assert_array_equal(first.arrays["relu_fc1"], second.arrays["relu_fc1"])

    def boom(x, calls=[0]):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("interrupted")
        return x

    with pytest.raises(RuntimeError):
        extract_features(b, ds, ["fc1"], cache=tmp_path, batch_size=8, input_transform=boom, progress=None)
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]  # nothing half-written survives


def _counting_transform(fail_at=None):
    calls = []

    def to_digits(x):  # one name for both runs: the input transform's name is part of the cache key
        calls.append(len(x))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt  # what Ctrl-C raises mid-extraction
        return x

    return to_digits, calls


def test_interrupted_extraction_resumes_at_its_first_missing_chunk(tmp_path, monkeypatch):
    from cnnlab.transfer import features

    monkeypatch.setattr(features, "CHUNK_IMAGES", 8)  # 40 images, batches of 4 -> 5 chunks of 2 batches
    b = build_model("digitnet", "NONE")
    ds = _digits(40)
    whole = extract_features(b, ds, ["fc1", "conv"], batch_size=4, use_cache=False, progress=None)
    tf, calls = _counting_transform(fail_at=7)  # dies in the 4th chunk, after 3 complete ones
    with pytest.raises(KeyboardInterrupt):
        extract_features(b, ds, ["fc1", "conv"], batch_size=4, cache=tmp_path, input_transform=tf, progress=None)
    assert not list(tmp_path.glob("*.npy"))  # no final cache file from an unfinished extraction
    assert not list(tmp_path.rglob("*tmp*"))  # and no half-written part
    tf, calls = _counting_transform()
    again = extract_features(b, ds, ["fc1", "conv"], batch_size=4, cache=tmp_path, input_transform=tf, progress=None)
    assert len(calls) == 4  # only chunks 4 and 5 were extracted again
    for layer in ("fc1", "conv"):
        np.testing.assert_allclose(again.arrays[layer], whole.arrays[layer], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(again.labels, whole.labels)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # the parts were merged and removed
    tf, calls = _counting_transform()
    extract_features(b, ds, ["fc1", "conv"], batch_size=4, cache=tmp_path, input_transform=tf, progress=None)
    assert calls == []  # a complete cache is not touched again


def test_sklearn_transformer_in_pipeline_and_gridsearch():
    ds = _digits(30)
    X = ds.images.numpy()
    y = ds.labels.numpy()
    pipe = Pipeline([("cnn", CNNFeatures(arch="digitnet", weights="NONE", layer="relu_fc1")), ("svm", LinearSVC())])
    assert clone(pipe).get_params()["cnn__layer"] == "relu_fc1"
    gs = GridSearchCV(pipe, {"cnn__layer": ["relu_fc1", "conv", "fc1+relu_fc1"], "svm__C": [0.1, 10]}, cv=3)
    gs.fit(X, y)
    assert gs.best_params_["cnn__layer"] in ("relu_fc1", "conv", "fc1+relu_fc1")
    feats = CNNFeatures(arch="digitnet", weights="NONE", layer="fc1+relu_fc1").fit_transform(X)
    assert feats.shape == (30, 256)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)


def test_svm_selection_never_looks_at_the_test_labels():
    rng = np.random.default_rng(0)
    ytr = np.repeat(np.arange(3), 20)
    Xtr = {"a": rng.normal(size=(60, 5)) + 3 * ytr[:, None], "b": rng.normal(size=(60, 5))}
    yte = np.repeat(np.arange(3), 10)
    Xte = {"a": rng.normal(size=(30, 5)) + 3 * yte[:, None], "b": rng.normal(size=(30, 5))}
    s1 = svm_study(Xtr, Xte, ytr, yte, ["0", "1", "2"], Cs=[0.01, 1, 100], cv=3)
    s2 = svm_study(Xtr, Xte, ytr, rng.permutation(yte), ["0", "1", "2"], Cs=[0.01, 1, 100], cv=3)
    assert (s1.layer, s1.C) == (s2.layer, s2.C) and s1.layer == "a"
    assert s1.test_acc > 0.8 and len(s1.rows) == 6 and s1.confusion.sum() == 30


def test_flip_tta_is_the_mean_of_image_and_mirror_features(tmp_path):
    b = build_model("digitnet", "NONE")
    ds = _digits(6)
    mirrored = TensorImageSet(ds.images.flip(-1), ds.labels, ds.classes, "mirrored")
    a = extract_features(b, ds, ["fc1"], normalize=False, use_cache=False, progress=None).arrays["fc1"]
    m = extract_features(b, mirrored, ["fc1"], normalize=False, use_cache=False, progress=None).arrays["fc1"]
    t = extract_features(b, ds, ["fc1"], normalize=False, tta="flip", cache=tmp_path, progress=None).arrays["fc1"]
    np.testing.assert_allclose(t, (a + m) / 2, atol=1e-5)


def test_svm_in_span_coordinates_gives_the_same_fits_as_on_the_full_features():
    from cnnlab.transfer.classify import span_coordinates

    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    X = rng.normal(size=(60, 400)) + y[:, None] * 0.15  # d ≫ n, as VGG16's layers on 15 Scene
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Xte = rng.normal(size=(30, 400)) + (np.arange(30) % 3)[:, None] * 0.15
    Ztr, Zte = span_coordinates(X, Xte)
    assert Ztr.shape == (60, 60) and Zte.shape == (30, 60)
    np.testing.assert_allclose(Ztr @ Ztr.T, X @ X.T, atol=1e-10)  # every inner product is kept
    np.testing.assert_allclose(Zte @ Ztr.T, Xte @ X.T, atol=1e-10)
    kw = dict(Cs=[0.01, 1, 100], cv=3, seed=0)
    fast = svm_study({"x": X}, {"x": Xte}, y, np.arange(30) % 3, ["a", "b", "c"], **kw)
    slow = svm_study({"x": X}, {"x": Xte}, y, np.arange(30) % 3, ["a", "b", "c"], project=False, **kw)
    for a, b in zip(fast.rows, slow.rows):
        assert (a["cv_acc"], a["test_acc"], a["dim"]) == (b["cv_acc"], b["test_acc"], b["dim"])
    np.testing.assert_array_equal(fast.predictions, slow.predictions)


def test_span_coordinates_of_duplicate_training_rows_keep_every_inner_product():
    """A folder with the same image twice: the Gram matrix is singular, the coordinates still exact."""
    from cnnlab.transfer.classify import span_coordinates

    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 300))
    X[7] = X[3]  # a duplicate image
    Xte = rng.normal(size=(5, 300))
    Ztr, Zte = span_coordinates(X, Xte)
    assert np.all(np.isfinite(Ztr)) and np.all(np.isfinite(Zte))
    assert np.allclose(np.triu(Ztr, 1), 0)  # lower triangular, as liblinear's sparse input expects
    np.testing.assert_allclose(Ztr @ Ztr.T, X @ X.T, atol=1e-9)
    np.testing.assert_allclose(Zte @ Ztr.T, Xte @ X.T, atol=1e-9)


def test_bf16_extraction_is_close_to_fp32_and_cached_apart(tmp_path):
    b = build_model("digitnet", "NONE")
    ds = _digits(16)
    fp32 = extract_features(b, ds, ["fc1"], cache=tmp_path, progress=None, precision="fp32")
    bf16 = extract_features(b, ds, ["fc1"], cache=tmp_path, progress=None, precision="bf16")
    assert bf16.cached_layers == []  # its own cache entry, not fp32's
    a, c = np.asarray(fp32.arrays["fc1"]), np.asarray(bf16.arrays["fc1"])
    assert not np.array_equal(a, c)
    # unit vectors: bf16's 8-bit mantissa keeps each feature vector within a few 1e-3 of fp32's
    assert np.abs(a - c).max() < 2e-2 and (a * c).sum(1).min() > 0.999
    with pytest.raises(Exception, match="--precision"):
        extract_features(b, ds, ["fc1"], use_cache=False, progress=None, precision="fp8")


def test_temporaries_of_a_killed_merge_are_removed_by_the_next_extraction(tmp_path):
    b = build_model("digitnet", "NONE")
    ds = _digits(8)
    first = extract_features(b, ds, ["fc1"], cache=tmp_path, progress=None)
    key = next(tmp_path.glob("*.labels.npy")).name[:-len(".labels.npy")]
    for f in list(tmp_path.iterdir()):
        f.unlink()  # as if the merge had been killed before its renames, leaving only temporaries:
    for name in (f"{key}.merge.tmp.npy", f"{key}.labels.tmp.npy", f".{key}.skipped.json.abc.tmp"):
        (tmp_path / name).write_bytes(b"half")
    again = extract_features(b, ds, ["fc1"], cache=tmp_path, progress=None)
    np.testing.assert_array_equal(again.arrays["fc1"], first.arrays["fc1"])
    assert not list(tmp_path.glob("*tmp*")) and not list(tmp_path.glob(".*tmp"))


def test_spp_pooling_is_the_whole_map_mean_then_the_quadrant_means():
    from cnnlab.transfer.features import pool_features

    t = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    v = pool_features(t, "spp", normalize=False)
    assert v.shape == (2, 3 * 5)
    np.testing.assert_allclose(v[:, :3], t.mean((2, 3)))
    quadrants = t.reshape(2, 3, 2, 2, 2, 2).mean((3, 5))  # (B, C, row, col)
    np.testing.assert_allclose(v[:, 3:], quadrants.flatten(1))
    assert torch.allclose(pool_features(t, "spp").norm(dim=1), torch.ones(2))


def test_flip_tta_lines_up_the_mirror_images_cells_under_spp():
    """A flip-equivariant model (one 1×1 convolution): with the mirror image's map flipped back, flip TTA
    changes nothing, quadrant by quadrant. Averaging unaligned maps would mix left and right."""
    from cnnlab.models.registry import ModelBundle

    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 4, 1)).eval()
    b = ModelBundle(conv, "conv1x1", "NONE", "NONE", (0.5,), (0.5,), 8, 1)
    g = torch.Generator().manual_seed(1)
    ds = TensorImageSet(torch.randint(0, 256, (5, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(5) % 2,
                        ["a", "b"], "spp-rand")
    kw = dict(spatial="spp", normalize=False, use_cache=False, progress=None, precision="fp32")
    plain = extract_features(b, ds, ["0"], **kw).arrays["0"]
    tta = extract_features(b, ds, ["0"], tta="flip", **kw).arrays["0"]
    np.testing.assert_allclose(tta, plain, atol=1e-5)
    # channel 0's quadrants are columns 4-7 (row, col): its left (4, 6) and right (5, 7) halves do differ
    assert not np.allclose(plain[:, [4, 6]], plain[:, [5, 7]], atol=1e-3)


def test_unknown_spatial_mode_is_one_clear_error(tmp_path):
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="--spatial 'max'.*avg, spp, flatten"):
        extract_features(build_model("digitnet", "NONE"), _digits(4), ["fc1"], spatial="max", cache=tmp_path,
                         progress=None)


def test_svm_sweep_matches_sklearns_cross_val_score_and_refit():
    """The pooled sweep (every fold and refit of a layer in one thread pool) = sklearn's CV, C by C."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from cnnlab.transfer.classify import linear_svc

    rng = np.random.default_rng(1)
    y = np.arange(90) % 3
    X = rng.normal(size=(90, 20)) + y[:, None] * 0.4
    yte = np.arange(45) % 3
    Xte = rng.normal(size=(45, 20)) + yte[:, None] * 0.4
    Cs = [0.01, 0.1, 1, 10]
    study = svm_study({"x": X}, {"x": Xte}, y, yte, ["a", "b", "c"], Cs=Cs, cv=4, seed=0, n_jobs=2)
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    for row, C in zip(study.rows, Cs):
        dual = len(X) < X.shape[1]
        assert row["cv_acc"] == pytest.approx(cross_val_score(linear_svc(C, 0, dual), X, y, cv=folds).mean(), abs=1e-12)
        assert row["test_acc"] == pytest.approx((linear_svc(C, 0, dual).fit(X, y).predict(Xte) == yte).mean(), abs=1e-12)
    assert len({r["cv_acc"] for r in study.rows}) > 1  # the Cs do differ: the comparison is not vacuous


def test_compile_failure_warns_once_and_extracts_eagerly(monkeypatch, caplog):
    """No C++ compiler (or an op inductor cannot take): one warning, then the eager features."""
    import cnnlab.transfer.features as feats_mod

    def broken_compile(fn, **_kw):
        def call(*_a, **_k):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")
        return call

    monkeypatch.setattr(feats_mod.torch, "compile", broken_compile)
    b = build_model("digitnet", "NONE")
    ds = _digits(10)
    kw = dict(normalize=False, use_cache=False, progress=None, precision="fp32", batch_size=4)
    with caplog.at_level("WARNING", logger="cnnlab"):
        got = extract_features(b, ds, ["fc1"], compile=True, **kw).arrays["fc1"]
    np.testing.assert_array_equal(got, extract_features(b, ds, ["fc1"], **kw).arrays["fc1"])
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "torch.compile failed" in caplog.records[0].message and "without it" in caplog.records[0].message


@pytest.mark.slow
def test_compiled_extraction_equals_eager_and_pads_the_last_batch(caplog):
    """Real inductor compilation (~20 s): same features, with a last batch shorter than the others."""
    torch.manual_seed(0)
    b = build_model("digitnet", "NONE")
    ds = _digits(10)  # batches of 4, 4, 2: the last is padded to the compiled shape
    kw = dict(normalize=False, use_cache=False, progress=None, precision="fp32", batch_size=4)
    eager = extract_features(b, ds, ["fc1", "conv"], **kw).arrays
    with caplog.at_level("WARNING", logger="cnnlab"):
        compiled = extract_features(b, ds, ["fc1", "conv"], compile=True, **kw).arrays
    assert not [r for r in caplog.records if "torch.compile failed" in r.message]  # it did compile
    for k in eager:
        assert compiled[k].shape == eager[k].shape
        np.testing.assert_allclose(compiled[k], eager[k], rtol=1e-4, atol=1e-5)


def test_a_compiled_extractor_is_reused_until_the_weights_change(monkeypatch):
    """Train and test splits share one compilation; a fine-tuned model (weights changed in place) gets its own,
    since frozen weights are baked into the compiled code."""
    import cnnlab.transfer.features as feats_mod

    compiles = []
    monkeypatch.setattr(feats_mod.torch, "compile", lambda fn, **kw: compiles.append(fn) or fn)
    b = build_model("digitnet", "NONE")
    kw = dict(use_cache=False, progress=None, precision="fp32", compile=True)
    extract_features(b, _digits(6, seed=0), ["fc1"], **kw)
    extract_features(b, _digits(6, seed=1), ["fc1"], **kw)
    assert len(compiles) == 1
    with torch.no_grad():
        next(b.model.parameters()).add_(0.1)  # an optimiser step
    extract_features(b, _digits(6, seed=1), ["fc1"], **kw)
    assert len(compiles) == 2


def test_the_model_stays_trainable_after_an_extraction():
    """Extraction re-lays the weights out (channels_last) under inference mode; they must not become
    inference tensors, or fine-tuning the same model afterwards (A-Q10) fails in backward."""
    b = build_model("digitnet", "NONE")
    extract_features(b, _digits(6), ["fc1"], use_cache=False, progress=None, precision="fp32")
    assert not any(p.is_inference() for p in b.model.parameters())
    b.model.train()
    b.model(b.preprocess(_digits(6).images)).sum().backward()
    assert all(p.grad is not None for p in b.model.parameters())
