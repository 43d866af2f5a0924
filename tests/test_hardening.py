"""The bad-input suite: every odd or broken input through the command line.

Each case builds its own files under ``tmp_path`` and runs ``cnnlab.cli.main``. The outcome is one of

* ``error``: exit code 2 and exactly one ``error: …`` line on stderr (what, where, how to fix), no
  traceback, and the run folder holds no result of the failed command;
* ``skip``: the command succeeds, the bad file is counted in ``metrics.json`` and listed with its
  reason in ``skipped_files.csv``;
* ``ok``: an odd but valid input (CMYK, 16-bit) is converted and used, nothing skipped.

In every case no temporary or half-written file is left anywhere under ``tmp_path``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.decode import MIN_SIDE

# --------------------------------------------------------------------------- bad files, made here


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _noise(seed: int, side: int = 32, mode: str = "L") -> Image.Image:
    shape = (side, side) if mode == "L" else (side, side, 3)
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8), mode=mode)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width: int = 25_000, height: int = 20_000) -> bytes:
    """A decompression bomb: a few hundred bytes whose header claims ``width × height`` 8-bit gray
    pixels (500 M by default: above PIL's warning limit, below its hard error limit, so a decoder
    that only relies on PIL's error would allocate half a gigabyte)."""
    z = zlib.compressobj(9)
    rows = z.compress(b"\x00" * (width + 1) * 8) + z.flush()  # 8 rows of zeros, the rest missing
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b""))


def truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    _noise(1, 64, "RGB").save(buf, "JPEG")
    return buf.getvalue()[:300]


def cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    _noise(2, 40, "RGB").convert("CMYK").save(buf, "JPEG")
    return buf.getvalue()


def png16() -> bytes:
    arr = (np.arange(40 * 40).reshape(40, 40) * 40).astype(np.uint16)
    return _png_bytes(Image.fromarray(arr))


BAD_FILES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    # name: (file name, content, the reason recorded when skipped)
    "truncated": ("truncated.jpg", truncated_jpeg, "truncated"),
    "zero-byte": ("empty.png", lambda: b"", "empty file"),
    "1x1": ("tiny.png", lambda: _png_bytes(Image.new("L", (1, 1), 128)), f"need at least {MIN_SIDE}×{MIN_SIDE}"),
    "huge": ("bomb.png", huge_png, "too large to decode safely"),
    "not-an-image": ("notes.txt", lambda: b"a text file in a class folder\n", "not an image file"),
    "image-extension-garbage": ("fake.jpg", lambda: b"this is not a JPEG at all" * 20, "not a readable image"),
}
ODD_BUT_VALID: dict[str, tuple[str, Callable[[], bytes]]] = {
    "cmyk": ("cmyk.jpg", cmyk_jpeg),
    "16-bit": ("deep.png", png16),
}


def image_folder(root: Path, per_class: int = 4, classes=("a", "b")) -> Path:
    """A small valid ``root/<class>/*.png`` folder (4 images a class: enough to split and cross-validate)."""
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _noise(10 * c + i).save(root / cls / f"{i}.png")
    return root


# --------------------------------------------------------------------------- running and checking


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cnnlab ARGV`` in this process → (exit code, stdout, stderr). Python warnings, which pytest
    would otherwise swallow, are added to stderr as the terminal would show them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, "") for w in caught)
    return rc, cap.out, shown + cap.err


def assert_one_clear_error(rc: int, err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    assert rc == 2, (rc, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "weights_only" not in err, err  # torch's advice to load unsafely is not a fix to give users
    for n in needles:
        assert n in err, (n, err)


def assert_no_partial_files(root: Path) -> None:
    """No temporary file of an atomic write (``.<name>.XXXX.tmp``) or any other ``*.tmp`` is left."""
    left = [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".tmp" or ".tmp" in p.name
                                                           or p.name == ".write-test")]
    assert not left, left


def assert_no_results(out: Path) -> None:
    """A failed command may have opened its run folder (config.json, log.txt) but wrote no result."""
    if out.exists() and out.is_dir():
        results = [p for p in out.rglob("*") if p.is_file() and p.name not in ("config.json", "log.txt")]
        assert not results, results


DIGITNET = ["--arch", "digitnet", "--weights", "NONE"]
TRANSFER_FAST = ["transfer", *DIGITNET, "--dry-run", "--no-pca", "--head-epochs", "0", "--layers", "relu_fc1"]


# --------------------------------------------------------------------------- bad image files


def _transfer_with_extra_file(tmp_path, capsys, class_name, name, content):
    """A good image folder plus one extra file in ``class_name``, through `cnnlab transfer`: no traceback."""
    data = image_folder(tmp_path / "data")
    (data / class_name / name).write_bytes(content)
    out = tmp_path / "run"
    rc, _, err = run_cli([*TRANSFER_FAST, "--dataset", f"imagefolder:{data}", "--out", out], capsys)
    assert rc == 0 and "Traceback" not in err, err
    return data, out, json.loads((out / "metrics.json").read_text())["transfer"]


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_in_a_class_folder_is_a_counted_skip(tmp_path, capsys, kind):
    name, content, reason = BAD_FILES[kind]
    data, out, m = _transfer_with_extra_file(tmp_path, capsys, "a", name, content())
    assert m["skipped_files"] == 1
    with open(out / "skipped_files.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in rows] == [name] and reason in rows[0]["reason"], rows
    assert m["n_train"] + m["n_test"] == 8  # every good image kept
    assert_no_partial_files(tmp_path)


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_image_file_given_by_name_is_one_clear_error(tmp_path, capsys, kind):
    name, content, reason = BAD_FILES[kind]
    path = tmp_path / name
    path.write_bytes(content())
    out = tmp_path / "run"
    rc, _, err = run_cli(["explain", "saliency", *DIGITNET, path, "--out", out], capsys)
    expected = "not a readable image" if kind == "not-an-image" else reason
    assert_one_clear_error(rc, err, f"image file {path}", expected)
    assert_no_results(out)
    assert_no_partial_files(tmp_path)


@pytest.mark.parametrize("kind", list(ODD_BUT_VALID))
def test_odd_but_valid_images_are_converted_not_skipped(tmp_path, capsys, kind):
    name, content = ODD_BUT_VALID[kind]
    data, out, m = _transfer_with_extra_file(tmp_path, capsys, "b", name, content())
    assert m["skipped_files"] == 0 and m["n_train"] + m["n_test"] == 9
    # and by name, through a command that reads single files
    rc, _, err = run_cli(["explain", "saliency", *DIGITNET, data / "b" / name, "--out", tmp_path / "sal"], capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert_no_partial_files(tmp_path)


# --------------------------------------------------------------------------- everything else: one clear error


@dataclass
class Case:
    argv: Callable[[Path], list]  # tmp_path → argv (without --out), making the files it needs
    needles: tuple[str, ...]  # substrings of the one error line


def _empty_class(tmp: Path) -> list:
    data = image_folder(tmp / "data")
    (data / "empty").mkdir()
    return [*TRANSFER_FAST, "--dataset", f"imagefolder:{data}"]


def _only_bad_files_class(tmp: Path) -> list:
    data = image_folder(tmp / "data")
    (data / "broken").mkdir()
    for i in range(2):
        (data / "broken" / f"{i}.jpg").write_bytes(truncated_jpeg())
    return [*TRANSFER_FAST, "--dataset", f"imagefolder:{data}"]


def _wrong_arch_weights(tmp: Path) -> list:
    from cnnlab.models import build_model

    torch.save(build_model("dann_mnist", "NONE").model.state_dict(), tmp / "dann.pth")
    return ["transfer", "--arch", "digitnet", "--weights", tmp / "dann.pth", "--dataset", "digits", "--dry-run"]


def _pickle_not_state_dict(tmp: Path) -> list:
    with open(tmp / "evil.pth", "wb") as f:
        pickle.dump({"x": object()}, f)
    return ["explain", "saliency", "--arch", "digitnet", "--weights", tmp / "evil.pth"]


def _list_not_state_dict(tmp: Path) -> list:
    torch.save([1, 2, 3], tmp / "list.pth")
    return ["explain", "saliency", "--arch", "digitnet", "--weights", tmp / "list.pth"]


def _text_as_weights(tmp: Path) -> list:
    (tmp / "weights.pth").write_text("not a weights file")
    return ["transfer", "--arch", "digitnet", "--weights", tmp / "weights.pth", "--dataset", "digits"]


def _zero_byte_weights(tmp: Path) -> list:
    (tmp / "empty.pth").write_bytes(b"")
    return ["transfer", "--arch", "digitnet", "--weights", tmp / "empty.pth", "--dataset", "digits"]


CASES: dict[str, Case] = {
    # data
    "empty class folder": Case(_empty_class, ("class folder", "empty", "contains no images")),
    "class folder of broken images only": Case(_only_bad_files_class, ("broken", "no readable image", "truncated")),
    "missing data root": Case(lambda t: [*TRANSFER_FAST, "--dataset", "15scene", "--data-root", t / "nowhere"],
                              ("--data-root", "nowhere", "does not exist")),
    "missing image folder": Case(lambda t: [*TRANSFER_FAST, "--dataset", f"imagefolder:{t / 'nope'}"],
                                 ("nope", "does not exist")),
    "mnist without its files": Case(lambda t: ["gan", "train", "--dataset", "mnist", "--data-root", t, "--dry-run"],
                                    ("MNIST not found", "--download")),
    "missing image file": Case(lambda t: ["explain", "saliency", *DIGITNET, t / "nope.png"], ("nope.png", "not found")),
    "unknown dataset": Case(lambda t: [*TRANSFER_FAST, "--dataset", "cifar11"], ("unknown dataset", "cifar11")),
    # weights
    "weights of another architecture": Case(_wrong_arch_weights, ("dann.pth", "does not fit --arch digitnet")),
    "pickle that is not a state dict": Case(_pickle_not_state_dict, ("evil.pth", "not a loadable PyTorch state dict")),
    "list that is not a state dict": Case(_list_not_state_dict, ("list.pth", "not a state dict")),
    "text file as weights": Case(_text_as_weights, ("weights.pth", "not a loadable PyTorch state dict")),
    "zero-byte weights": Case(_zero_byte_weights, ("empty.pth", "empty (0 bytes)")),
    "missing weights file": Case(lambda t: ["transfer", "--arch", "digitnet", "--weights", t / "none.pth"],
                                 ("none.pth", "file not found")),
    "unknown architecture": Case(lambda t: ["inspect", "--arch", "vgg61", "--weights", "NONE"],
                                 ("vgg61", "is not a known model", "vgg16")),
    # layers
    "unknown layer (transfer)": Case(lambda t: ["transfer", *DIGITNET, "--dataset", "digits", "--layers", "relu99"],
                                     ("'relu99' is not a layer of digitnet", "relu_fc1")),
    "unknown layer (Grad-CAM)": Case(lambda t: ["explain", "saliency", *DIGITNET, "--method", "gradcam",
                                                "--layer", "conv99"], ("--layer: 'conv99'", "relu_fc1")),
    # class names and indices
    "unknown class name (fooling)": Case(lambda t: ["explain", "fool", *DIGITNET, "--target", "tarantula"],
                                         ("--target 'tarantula'", "not a class index or a unique class name")),
    "unknown class name (class visualisation)": Case(
        lambda t: ["explain", "classviz", *DIGITNET, "--classes", "3,tarantula"], ("--classes 'tarantula'",)),
    "unknown class name (saliency)": Case(lambda t: ["explain", "saliency", *DIGITNET, "--target", "zebra"],
                                          ("--target 'zebra'",)),
    "class index too large (fooling)": Case(lambda t: ["explain", "fool", *DIGITNET, "--target", "1000"],
                                            ("--target 1000", "classes 0..9")),
    "negative class index (class visualisation)": Case(
        lambda t: ["explain", "classviz", *DIGITNET, "--classes", "-1"], ("--classes -1", "classes 0..9")),
    "class index too large (attack)": Case(lambda t: ["explain", "attack", *DIGITNET, "--target", "10", "--limit", "2"],
                                           ("--target 10", "classes 0..9")),
    "class index too large (saliency)": Case(lambda t: ["explain", "saliency", *DIGITNET, "--target", "12"],
                                             ("--target 12", "classes 0..9")),
    "image index out of range": Case(lambda t: ["explain", "saliency", *DIGITNET, "--indices", "5000"],
                                     ("--indices", "5000", "out of range")),
    "negative image index": Case(lambda t: ["explain", "saliency", *DIGITNET, "--indices", "-3"], ("--indices",)),
    "class visualisation start index out of range": Case(
        lambda t: ["explain", "classviz", *DIGITNET, "--classes", "3", "--init-index", "99999"],
        ("--init-index: 99999 is out of range", "use 0..999")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_error_and_leaves_no_result(tmp_path, capsys, case):
    work = tmp_path / "work"
    work.mkdir()
    argv = CASES[case].argv(work)
    out = tmp_path / "run"
    rc, _, err = run_cli([*argv, "--out", out], capsys)
    assert_one_clear_error(rc, err, *CASES[case].needles)
    assert_no_results(out)
    assert_no_partial_files(tmp_path)


# --------------------------------------------------------------------------- an output folder that cannot be written

UNWRITABLE_COMMANDS = {
    "transfer": [*TRANSFER_FAST, "--dataset", "digits"],
    "explain saliency": ["explain", "saliency", *DIGITNET, "--limit", "2"],
    "lab": ["lab", "--dry-run", "--parts", "A"],
}


@pytest.mark.parametrize("command", list(UNWRITABLE_COMMANDS))
@pytest.mark.parametrize("how", ["a file in its place", "under a file", "read-only parent"])
def test_unwritable_output_folder_is_one_clear_error(tmp_path, capsys, command, how):
    if how == "a file in its place":
        out = tmp_path / "out"
        out.write_text("a file where the run folder should be")
    elif how == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    else:
        if os.geteuid() == 0:
            pytest.skip("running as root: permission bits do not stop root from writing (the file variants cover it)")
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
        out = parent / "run"
    try:
        before = sorted(p.name for p in tmp_path.rglob("*"))
        rc, _, err = run_cli([*UNWRITABLE_COMMANDS[command], "--out", out], capsys)
        assert_one_clear_error(rc, err, "--out", str(out), "writable")
        assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    finally:
        if how == "read-only parent":
            (tmp_path / "ro").chmod(0o700)


def test_a_killed_runs_temporary_files_are_removed_when_its_folder_is_reopened(tmp_path):
    """Only SIGKILL (or a power cut) can interrupt an atomic write between its temporary file and the
    rename; the next command on that run folder deletes such leftovers and keeps the real files."""
    from cnnlab.runs import Run

    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / ".last.pt.k2j3h4.tmp").write_bytes(b"half a checkpoint")
    (out / ".metrics.json.x8y9.tmp").write_text('{"half": ')
    (out / "checkpoints" / "last.pt").write_bytes(b"complete")
    Run.create(out, "test", {}, seed=0, resume=True).close()
    assert_no_partial_files(tmp_path)
    assert (out / "checkpoints" / "last.pt").read_bytes() == b"complete"


def test_run_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp (0600): the renamed file must be as readable as one written by open()."""
    from cnnlab.runs import atomic_write_text

    p = atomic_write_text(tmp_path / "report.html", "<html></html>")
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    assert p.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777
