"""What a new user meets first: help that reads as help, small folders that work or say what is too
small, failures recorded in the run folder, CSVs without float noise."""

from __future__ import annotations

import argparse
import csv
import re

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _folder(root, classes, n, seed=0, splits=False):
    rng = np.random.default_rng(seed)
    for split in (("train", "test") if splits else ("",)):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


def _one_error_line(rc, err, *needles):
    assert rc == 2, err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    for n in needles:
        assert n in err, (n, err)


# --------------------------------------------------------------------------- small folders
def test_transfer_on_a_one_class_folder_says_it_needs_two_classes(tmp_path, capsys):
    data = _folder(tmp_path / "cats", ["cat"], 6)
    out = tmp_path / "run"
    rc = main(["transfer", "--dataset", f"imagefolder:{data}", "--arch", "digitnet", "--weights", "NONE",
               "--out", str(out)])
    _one_error_line(rc, capsys.readouterr().err, "only class 'cat'", "at least 2 classes", "<class>")
    assert not (out / "metrics.json").exists()


def test_transfer_with_a_single_image_class_says_what_cross_validation_needs(tmp_path, capsys):
    data = _folder(tmp_path / "d", ["a", "b"], 3, splits=True)
    for f in list((data / "train" / "b").iterdir())[1:]:
        f.unlink()
    rc = main(["transfer", "--dataset", f"imagefolder:{data}", "--arch", "digitnet", "--weights", "NONE",
               "--out", str(tmp_path / "run")])
    _one_error_line(rc, capsys.readouterr().err, "'b' (1)", "at least 2 per class")


def test_adapt_between_two_tiny_folders_works(tmp_path, capsys):
    """2 classes x 6 images per domain with small batches: the README advertises small domains. Its
    source train split held too few images for a tenth to be held out (torch.cat of nothing)."""
    a = _folder(tmp_path / "A", ["x", "y"], 6, seed=1)
    b = _folder(tmp_path / "B", ["x", "y"], 6, seed=2)
    out = tmp_path / "run"
    rc = main(["adapt", "--source", f"imagefolder:{a}", "--target", f"imagefolder:{b}", "--batch-size", "4",
               "--dann-batch-size", "2", "--source-only-epochs", "1", "--dann-epochs", "1", "--target-only-epochs",
               "1", "--pl-rounds", "1", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} >= {"source only", "DANN"}
    cfg = (out / "config.json").read_text()
    assert '"n_source_val": 1' in cfg  # one image held out for label-free selection


def test_adapt_refuses_a_source_of_one_image_with_the_reason(tmp_path, capsys):
    a = _folder(tmp_path / "A", ["x", "y"], 1, splits=True)
    (a / "train" / "y" / "0.png").unlink()
    (a / "train" / "y").rmdir()
    (a / "train" / "y").mkdir()
    b = _folder(tmp_path / "B", ["x", "y"], 4, seed=2, splits=True)
    rc = main(["adapt", "--source", f"imagefolder:{a}", "--target", f"imagefolder:{b}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err


# --------------------------------------------------------------------------- failures are recorded
def test_a_failed_command_records_its_error_in_the_run_folders_log(tmp_path, capsys):
    data = _folder(tmp_path / "cats", ["cat"], 4)
    out = tmp_path / "run"
    rc = main(["transfer", "--dataset", f"imagefolder:{data}", "--arch", "digitnet", "--weights", "NONE",
               "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    log = (out / "log.txt").read_text().splitlines()
    assert log[-1].endswith(f"ERROR {err}"), log[-3:]


def test_a_bad_C_is_reported_before_any_download(tmp_path, capsys):
    rc = main(["transfer", "--C", "abc", "--out", str(tmp_path / "r")])  # --weights DEFAULT: would download VGG16
    _one_error_line(rc, capsys.readouterr().err, "--C 'abc'", "comma-separated numbers")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- the command line reads as help
def test_top_level_help_is_written_for_users(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "thin layer" not in text
    assert "cnnlab lab" in text and "deep-learning-for-vision practical" in text


def test_datasets_prints_plain_text(capsys):
    assert main(["datasets"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and "====" not in text
    for name in ("mnist", "mnist-embedded", "digits", "15scene", "imagenet-val25", "imagefolder:PATH"):
        assert re.search(rf"^  {re.escape(name)} ", text, re.M), name


@pytest.mark.parametrize("argv", [["lab"], ["transfer"], ["gan", "train"], ["explain", "attack"]])
def test_an_unknown_flag_shows_the_usage_of_its_own_command(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--bogus-flag"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.startswith(f"usage: cnnlab {' '.join(argv)} ") and "unrecognized arguments: --bogus-flag" in err


def _commands(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from _commands(child, (*path, name))


def test_every_option_has_help_and_shows_its_default():
    missing = []
    for path, parser in _commands(build_parser()):
        formatter = parser._get_formatter()
        for a in parser._actions:
            if not a.option_strings or a.dest in ("help", "_parser"):
                continue
            flag = " ".join(path) + " " + a.option_strings[-1]
            if not a.help:
                missing.append(f"{flag}: no help")
                continue
            shown = formatter._expand_help(a)  # the option's text as --help prints it
            if a.default not in (None, False, "", argparse.SUPPRESS) and "default" not in shown:
                missing.append(f"{flag}: default {a.default!r} not shown")
            if "(default: )" in shown:
                missing.append(f"{flag}: empty default shown")
    assert not missing, "\n".join(missing)


def test_inspect_names_images_by_their_path_inside_the_folder(tmp_path, capsys):
    data = _folder(tmp_path / "imgs", ["a", "b"], 1)
    rc = main(["inspect", "--arch", "digitnet", "--weights", "NONE", "--images", str(data), "-k", "1",
               "--out", str(tmp_path / "r")])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "a/0.png:" in printed and "b/0.png:" in printed


# --------------------------------------------------------------------------- CSVs
def test_csv_holds_float32_values_without_float64_noise(tmp_path):
    from cnnlab.runs import write_csv

    acc = torch.tensor(0.937).item()  # 0.9369999766349792 as a Python float
    path = write_csv(tmp_path / "t.csv", [{"acc": acc, "exact": 0.1 + 0.2, "n": 3, "big": 1e300, "nan": float("nan")}])
    row = next(csv.DictReader(open(path)))
    assert row == {"acc": "0.937", "exact": "0.30000000000000004", "n": "3", "big": "1e+300", "nan": ""}
    assert float(np.float32(float(row["acc"]))) == acc  # the same float32, read back


# --------------------------------------------------------------------------- figures a new user looks at
def test_learning_curve_labels_each_measured_size_once():
    from matplotlib.ticker import NullFormatter

    from cnnlab.transfer.figures import learning_curve

    rows = [{"method": m, "per_class": k, "test_acc": 0.5} for m in ("svm", "scratch") for k in (2, 5, 10, 20, 50)]
    ax = learning_curve(rows).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "5", "10", "20", "50"]
    assert isinstance(ax.xaxis.get_minor_formatter(), NullFormatter)  # no 2x10^0-style labels between them


def test_top5_examples_cover_different_classes():
    from cnnlab.transfer.figures import varied_examples

    labels = torch.tensor([0] * 100 + [1] * 100 + [2] * 3)
    picked = varied_examples(labels, 5)
    assert labels[picked].tolist() == [0, 1, 2, 0, 1]  # one of each class before any repeats
    assert sorted(varied_examples(labels, 500)) == list(range(203))  # asked for more: every example, once


def test_top5_figure_puts_each_images_bars_beside_it_with_the_class_names():
    from cnnlab.transfer.figures import topk_figure

    imgs = torch.zeros(6, 1, 28, 28, dtype=torch.uint8)
    preds = [[("3", 0.7), ("1", 0.2), ("2", 0.1)]] * 6
    fig = topk_figure(imgs, preds, ["3", "1", "2", "4", "5", "6"])
    bars = [ax for ax in fig.axes if ax.patches]
    assert len(bars) == 6 and all([t.get_text() for t in ax.get_yticklabels()] == ["3", "1", "2"] for ax in bars)
    images = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in images] == ["true: 3", "true: 1", "true: 2", "true: 4", "true: 5", "true: 6"]
    for img_ax, bar_ax in zip(images, bars):  # the bars sit right of their image, on the same row
        a, b = img_ax.get_position(), bar_ax.get_position()
        assert b.x0 >= a.x1 - 1e-6 and abs(a.y0 - b.y0) < 0.1


def test_attack_figure_titles_say_what_the_network_predicts_on_each_attacked_image():
    from cnnlab.explain.figures import attack_titles

    rows = [{"label": "cat", "pred": "dog", "success": True}, {"label": "car", "pred": "car", "success": False}]
    originals, attacked = attack_titles(rows, 2)
    assert originals == ["cat", "car"] and attacked == ["dog", "car (failed)"]
