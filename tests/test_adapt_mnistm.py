"""MNIST-M builder: determinism, the blend formula, caching, bad photo folders."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.adapt.mnistm import Photos, blend_mnistm, build_mnistm, embedded_photos, load_photos
from cnnlab.data import TensorImageSet
from cnnlab.errors import CnnlabError


def _digits(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = (torch.rand(n, 1, 28, 28, generator=g) > 0.8).to(torch.uint8) * torch.randint(1, 256, (n, 1, 28, 28), generator=g).to(torch.uint8)
    return TensorImageSet(imgs, torch.arange(n) % 10, [str(i) for i in range(10)], "tiny-digits")


def _photos():
    rng = np.random.default_rng(1)
    return Photos([rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (33, 61, 3), dtype=np.uint8)],
                  ["a", "b"], "random")


def test_same_seed_same_bytes_different_seed_different():
    d, p = _digits(), _photos()
    a = build_mnistm(d, p, seed=42, cache=False)
    b = build_mnistm(d, p, seed=42, cache=False)
    c = build_mnistm(d, p, seed=43, cache=False)
    assert a.images.dtype == torch.uint8 and a.images.shape == (40, 3, 28, 28)
    assert a.images.numpy().tobytes() == b.images.numpy().tobytes()
    assert not torch.equal(a.images, c.images)
    assert torch.equal(a.labels, d.labels)
    assert not torch.equal(build_mnistm(d, p, seed=42, stream=1, cache=False).images, a.images)  # test split differs


def test_blend_is_abs_difference_with_the_binarised_digit():
    colour = np.array([200, 30, 90], dtype=np.uint8)
    photo = Photos([np.broadcast_to(colour, (50, 60, 3)).copy()], ["flat"], "flat")
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 10:18, 12:14] = 7  # faint ink counts as ink (binarised at > 0)
    out = blend_mnistm(digits, photo, rng=np.random.default_rng(0))
    assert out.shape == (3, 28, 28, 3)
    assert (out[:, 0, 0] == colour).all()  # background: the photo
    assert (out[:, 12, 12] == np.abs(colour.astype(int) - 255)).all()  # ink: |photo − 255|


def test_crops_stay_inside_each_photo_and_use_every_photo():
    p = Photos([np.full((29, 29, 3), 1, np.uint8), np.full((30, 100, 3), 2, np.uint8)], ["small", "wide"], "x")
    out = blend_mnistm(np.zeros((200, 28, 28), np.uint8), p, rng=np.random.default_rng(3))
    assert set(np.unique(out)) == {1, 2}


def test_cache_returns_identical_images(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path))
    d, p = _digits(), _photos()
    a = build_mnistm(d, p, seed=5)
    assert len(list(tmp_path.rglob("mnistm-*.npz"))) == 1
    b = build_mnistm(d, p, seed=5)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_photos_must_be_larger_than_digits():
    tiny = Photos([np.zeros((20, 20, 3), np.uint8)], ["tiny"], "x")
    with pytest.raises(CnnlabError, match="larger than the digits"):
        blend_mnistm(np.zeros((2, 28, 28), np.uint8), tiny, rng=np.random.default_rng(0))


def test_load_photos_skips_bad_files_and_rejects_empty_folders(tmp_path):
    Image.fromarray(np.full((40, 45, 3), 9, np.uint8)).save(tmp_path / "ok.png")
    Image.fromarray(np.full((10, 10), 9, np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    ph = load_photos(tmp_path)
    assert ph.names == ["ok.png"] and ph.images[0].shape == (40, 45, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="no usable photograph"):
        load_photos(tmp_path / "empty")
    with pytest.raises(CnnlabError, match="not a folder"):
        load_photos(tmp_path / "missing")


def test_embedded_photos_are_colour_and_offline():
    ph = embedded_photos()
    assert len(ph) >= 3 and all(im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8 for im in ph.images)
