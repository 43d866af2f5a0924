"""A user's own domains: two image folders with the same classes, through the whole `cnnlab adapt` command."""

import csv

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _domain(root, style: str, n: int = 24):
    """Two shape classes (a bar vs a block), drawn dark on light (style a) or light on a noisy colour (b)."""
    rng = np.random.default_rng(0 if style == "a" else 1)
    for split, count in (("train", n), ("test", n // 2)):
        for cls in ("bar", "block"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(count):
                img = np.full((40, 40, 3), 230, np.uint8) if style == "a" else rng.integers(0, 120, (40, 40, 3), dtype=np.uint8)
                ink = 20 if style == "a" else 250
                x, y = rng.integers(4, 16, 2)
                if cls == "bar":
                    img[y:y + 20, x:x + 4] = ink
                else:
                    img[y:y + 12, x:x + 12] = ink
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def test_adapt_between_two_user_folders(tmp_path, capsys):
    a, b = _domain(tmp_path / "A", "a"), _domain(tmp_path / "B", "b")
    out = tmp_path / "run"
    rc = main(["adapt", "--source", f"imagefolder:{a}", "--target", f"imagefolder:{b}", "--val-size", "4",
               "--dry-run", "--pl-select", "source_val_acc", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} >= {"source only", "DANN"}
    for r in rows:
        assert 0.0 <= float(r["target test acc (last)"]) <= 1.0
    with open(out / "history_dann.csv") as f:  # self-training starts where --pl-select says (ties: earliest)
        hist = list(csv.DictReader(f))
    best = max(hist, key=lambda r: (float(r["source_val_acc"]), -int(r["epoch"])))["epoch"]
    with open(out / "pseudo_rounds_dann.csv") as f:
        assert {r["start"] for r in csv.DictReader(f)} == {f"DANN epoch {best} (picked by source_val_acc)"}


def test_domains_with_different_classes_are_one_clear_error(tmp_path, capsys):
    a = _domain(tmp_path / "A", "a")
    b = _domain(tmp_path / "B", "b")
    (b / "train" / "block").rename(b / "train" / "square")
    (b / "test" / "block").rename(b / "test" / "square")
    rc = main(["adapt", "--source", f"imagefolder:{a}", "--target", f"imagefolder:{b}", "--dry-run",
               "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and "same class names" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "summary.csv").exists()


@pytest.mark.parametrize("flag, other", [("--batch-size", "--dann-batch-size"), ("--dann-batch-size", "--batch-size")])
def test_a_batch_larger_than_a_domain_fails_before_anything_is_written(tmp_path, capsys, flag, other):
    a, b = _domain(tmp_path / "A", "a"), _domain(tmp_path / "B", "b")
    out = tmp_path / "run"
    rc = main(["adapt", "--source", f"imagefolder:{a}", "--target", f"imagefolder:{b}", "--val-size", "4",
               flag, "500", other, "8", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{flag} 500 is larger than" in err and "Traceback" not in err
    assert not out.exists()  # checked before the run folder is created
