"""The command line: run folders from --dry-run, one clear line for bad input (exit 2, no traceback)."""

import json

import pytest
import torch

from cnnlab.cli import main
from cnnlab.models import build_model


@pytest.fixture
def digit_weights(tmp_path):
    path = tmp_path / "digitnet.pth"
    torch.save(build_model("digitnet", "NONE").model.state_dict(), path)
    return path


def test_transfer_dry_run_writes_a_complete_run_folder(tmp_path, digit_weights, capsys):
    out = tmp_path / "run"
    rc = main(["transfer", "--dataset", "digits", "--arch", "digitnet", "--weights", str(digit_weights),
               "--input-transform", "digits_as_mnist", "--layers", "relu_fc1,conv", "--scratch-epochs", "1",
               "--out", str(out), "--dry-run"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "chosen by CV" in printed
    m = json.loads((out / "metrics.json").read_text())
    sel = m["transfer"]["selected"]
    assert sel["layer"] in ("relu_fc1", "conv") and 0 <= sel["test_acc"] <= 1
    assert m["transfer"]["n_train"] == 40  # --dry-run keeps 4 per class
    for f in ("config.json", "svm_grid.csv", "per_class.csv", "figures/svm_grid.png", "figures/confusion.png",
              "figures/curves.png", "log.txt"):
        assert (out / f).exists(), f


@pytest.mark.parametrize("argv, message", [
    (["transfer", "--arch", "digitnet", "--weights", "NONE", "--dataset", "digits", "--layers", "relu99"],
     "'relu99' is not a layer of digitnet"),
    (["transfer", "--dataset", "15scene", "--data-root", "/nonexistent/data", "--arch", "digitnet", "--weights", "NONE"],
     "--data-root /nonexistent/data does not exist"),
    (["transfer", "--arch", "digitnet", "--weights", "/no/such/file.pth"], "--weights /no/such/file.pth: file not found"),
    (["transfer", "--arch", "digitnet", "--weights", "NONE", "--C", "0"], "every C must be > 0"),
    (["inspect", "--arch", "nosuchnet", "--weights", "NONE"], "is not a known model"),
    (["lab", "--parts", "AZ"], "unknown part(s) Z"),
])
def test_bad_input_gets_one_clear_line(tmp_path, capsys, argv, message):
    rc = main(argv + ["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_inspect_prints_parameters_and_top_k(tmp_path, digit_weights, capsys):
    from PIL import Image

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.new("L", (28, 28), 0).save(img_dir / "blank.png")
    (img_dir / "readme.txt").write_text("not an image")
    rc = main(["inspect", "--arch", "digitnet", "--weights", str(digit_weights), "--images", str(img_dir),
               "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0 and "TOTAL" in out and "blank.png:" in out
    assert (tmp_path / "o" / "figures" / "top_k.png").exists()
