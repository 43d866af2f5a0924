"""The data layer: datasets by name, robust decoding, clear errors, restricted npz loading."""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import gather_batches, index_batches, load_dataset, to_float
from cnnlab.data.decode import decode_image, scan_folder
from cnnlab.data.sources import load_image_folder
from cnnlab.errors import CnnlabError


def test_embedded_sets_are_uint8_fixed_and_disjoint():
    tr, te = load_dataset("mnist-embedded", "train"), load_dataset("mnist-embedded", "test")
    assert tr.images.dtype == torch.uint8 and tr.images.shape[1:] == (1, 28, 28)
    assert len(tr) == 4000 and len(te) == 1000
    assert torch.equal(tr.labels.bincount(), torch.full((10,), 400))
    again = load_dataset("mnist-embedded", "train")
    assert torch.equal(tr.images, again.images)  # the split never depends on a run's seed
    d_tr, d_te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(d_tr) + len(d_te) == 1797 and d_tr.images.shape[1:] == (1, 8, 8) and d_tr.images.max() == 255


def test_to_float_replicates_gray_and_normalises():
    x = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    y = to_float(x, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert y.shape == (2, 3, 4, 4) and torch.allclose(y, torch.ones_like(y))


def _save(path, img, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("n, batch, chunk, drop_last", [(103, 10, 4, False), (103, 10, 4, True), (40, 10, 4, False),
                                                       (7, 10, 3, False), (0, 10, 2, False)])
def test_gathered_batches_are_the_per_batch_gathers_in_order(n, batch, chunk, drop_last):
    """Grouping the copies (chunk batches per gather) must not change a batch, their order, the last
    short batch, or the generator's draws."""
    images = torch.randint(0, 256, (n, 3, 5, 5), dtype=torch.uint8)
    labels = torch.arange(n)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = [(images[i], labels[i]) for i in index_batches(n, batch, generator=g1, drop_last=drop_last)]
    got = list(gather_batches(index_batches(n, batch, generator=g2, drop_last=drop_last), images, labels,
                              chunk=chunk))
    assert len(got) == len(expected) == (n // batch if drop_last else -(-n // batch))
    for (x, y), (ex, ey) in zip(got, expected):
        assert torch.equal(x, ex) and torch.equal(y, ey)
        assert x.is_contiguous()
    assert torch.equal(g1.get_state(), g2.get_state())


def test_gathered_groups_stay_under_their_byte_cap(monkeypatch):
    """Large rows (photos) are not copied 64 batches at a time: a group holds at most max_bytes."""
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)  # 192 bytes a row
    seen = []
    real = torch.Tensor.index_select
    monkeypatch.setattr(torch.Tensor, "index_select", lambda t, d, i: seen.append(len(i)) or real(t, d, i))
    idx = list(index_batches(50, 4, generator=torch.Generator().manual_seed(0)))
    got = [x for (x,) in gather_batches(idx, images, chunk=64, max_bytes=192 * 10)]
    assert seen == [8] * 5 + [10]  # two batches of 4 a group (8 rows ≤ 10); the last 4 + 4 + 2 fit in one
    assert all(torch.equal(x, images[i]) for x, i in zip(got, idx))
    seen.clear()
    assert len(list(gather_batches(idx, images, max_bytes=1))) == 13 and seen == [4] * 12 + [2]  # one batch a group


def test_decode_handles_odd_but_valid_images(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    cmyk = _save(tmp_path / "c.jpg", Image.fromarray(rgb).convert("CMYK"))
    x = decode_image(cmyk, 32, 3)
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    arr16 = (np.arange(40 * 40).reshape(40, 40) * 40).astype(np.uint16)
    p16 = _save(tmp_path / "s.png", Image.fromarray(arr16))
    g = decode_image(p16, None, 1)
    assert g.max() > 200 and g.dtype == torch.uint8  # rescaled from 16 bits, not clipped to 255
    gray = _save(tmp_path / "g.png", Image.fromarray(np.full((20, 20), 77, np.uint8)))
    x = decode_image(gray, 16, 3)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]) and int(x[0, 0, 0]) == 77  # A-Q9: replicated


@pytest.mark.parametrize("kind", ["truncated", "empty", "tiny", "garbage"])
def test_decode_rejects_broken_images_with_a_reason(tmp_path, kind):
    p = tmp_path / "bad.jpg"
    if kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(buf, "JPEG")
        p.write_bytes(buf.getvalue()[:300])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "tiny":
        _save(p, Image.new("RGB", (1, 1)))
    else:
        p.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(ValueError) as e:
        decode_image(p, 32, 3)
    assert str(e.value)


def test_folder_skips_and_counts_bad_files(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            _save(tmp_path / c / f"{i}.png", Image.new("RGB", (20, 20), (i * 40, 10, 10)))
    (tmp_path / "cat" / "notes.txt").write_text("hello")
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    ds = load_image_folder(tmp_path, "train", size=16)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in ds.skipped}
    assert "notes.txt" in reasons and "not an image" in reasons["notes.txt"]
    assert "broken.jpg" in reasons  # failed at decode time, counted, not fatal
    assert ds.images.shape[1:] == (3, 16, 16) and len(ds) + len(load_image_folder(tmp_path, "test", size=16)) == 6


def test_empty_class_folder_and_missing_root_are_clear_errors(tmp_path):
    _save(tmp_path / "a" / "0.png", Image.new("RGB", (20, 20)))
    (tmp_path / "b").mkdir()
    with pytest.raises(CnnlabError, match=r"class folder .*b contains no images"):
        scan_folder(tmp_path)
    with pytest.raises(CnnlabError, match="does not exist"):
        load_dataset("imagefolder:" + str(tmp_path / "nope"))
    with pytest.raises(CnnlabError, match="--data-root"):
        load_dataset("15scene", data_root=tmp_path / "missing")
    with pytest.raises(CnnlabError, match=r"MNIST not found .*--download"):
        load_dataset("mnist", data_root=tmp_path)
    with pytest.raises(CnnlabError, match="unknown dataset"):
        load_dataset("cifar11")


def _npz(path, label_map_obj):
    X = np.zeros((2, 8, 8, 3), np.uint8)
    y = np.array([1, 0])
    with zipfile.ZipFile(path, "w") as z:
        for name, arr in (("X", X), ("y", y)):
            b = io.BytesIO()
            np.save(b, arr)
            z.writestr(f"{name}.npy", b.getvalue())
        b = io.BytesIO()
        np.save(b, label_map_obj, allow_pickle=True)
        z.writestr("label_map.npy", b.getvalue())


def test_imagenet_npz_label_map_is_read_without_arbitrary_pickles(tmp_path):
    _npz(tmp_path / "imagenet_val_25.npz", np.array({0: "tench", 1: "goldfish"}, dtype=object))
    ds = load_dataset("imagenet-val25", "test", data_root=tmp_path)
    assert ds.classes[:2] == ["tench", "goldfish"] and ds.images.shape == (2, 3, 8, 8)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil_dir = tmp_path / "evil"
    evil_dir.mkdir()
    _npz(evil_dir / "imagenet_val_25.npz", np.array({0: Evil()}, dtype=object))
    with pytest.raises(CnnlabError, match="refusing to load builtins.print"):
        load_dataset("imagenet-val25", "test", data_root=evil_dir)


def test_has_mnist_finds_torchvisions_layout(tmp_path):
    from cnnlab.data.sources import has_mnist

    assert not has_mnist(None) and not has_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    assert not has_mnist(tmp_path)  # the folder alone is not the data
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"")
    assert has_mnist(tmp_path)
