"""`cnnlab explain …`: dry runs write a run folder; bad input is one clear error line and no folder."""

import json

import pytest

from cnnlab.cli import main
from test_explain_saliency import one_thread  # noqa: F401 (autouse fixture)

TINY = ["--arch", "digitnet", "--weights", "NONE"]  # untrained: no training in tests


@pytest.mark.parametrize("argv,files", [
    (["saliency", "--method", "all", "--sanity", "--limit", "3"], ["figures/saliency.png", "figures/sanity_curve.png",
                                                                   "per_image.csv", "sanity_check.csv"]),
    (["fool", "--limit", "2", "--targets-per-image", "2"], ["figures/fooling.png", "per_pair.csv"]),
    (["attack", "--limit", "3", "--target", "random"], ["summary.csv", "per_image_pgd-l2.csv",
                                                        "figures/adversarial_examples.png"]),
    (["classviz", "--classes", "3,8", "--sweep"], ["figures/classviz.png", "figures/sweep.png", "final.csv"]),
])
def test_dry_runs_write_run_folders(tmp_path, argv, files, capsys):
    out = tmp_path / "run"
    assert main(["explain", *argv, *TINY, "--dry-run", "--out", str(out)]) == 0
    for f in files:
        assert (out / f).is_file(), f
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["command"] == f"explain {argv[0]}"
    assert "run folder" in capsys.readouterr().out or argv[0] == "saliency"


def test_attack_summary_numbers(tmp_path):
    out = tmp_path / "att"
    assert main(["explain", "attack", "--attack", "fgsm", *TINY, "--limit", "4", "--dry-run", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["summary"][0]["attack"] == "fgsm" and m["summary"][0]["n"] == 4
    rows = m["tables"]["per_image_fgsm"]
    assert [r["linf_255"] for r in rows] == pytest.approx([8.0] * 4, abs=1e-3)  # FGSM moves by ε = 8/255
    assert all(r["psnr"] > 20 for r in rows)


@pytest.mark.parametrize("argv,message", [
    (["fool", *TINY, "--target", "banana"], "--target 'banana' is not a class index"),
    (["fool", *TINY, "--target", "12"], "--target 12: digitnet has classes 0..9"),
    (["saliency", *TINY, "--indices", "5000"], "--indices: 5000 is out of range"),
    (["saliency", *TINY, "no_such_image.png"], "image file no_such_image.png not found"),
    (["classviz", *TINY], "--classes is required"),
    (["attack", "--weights", "w.pth"], "needs --arch"),
    (["saliency", *TINY, "--method", "gradcam", "--layer", "nope"], "'nope' is not a layer of digitnet"),
    (["saliency", "--arch", "resnet_nope", "--weights", "NONE"], "is not a known model"),
    (["fool", *TINY, "--dataset", "imagenet-val25"], "needs --data-root"),
    (["saliency", *TINY, "--indices", "a,b"], "expected integers"),
    (["attack", *TINY, "--compare"], "name the second network with --arch-b"),
    # settings are checked before the run folder is made
    (["fool", *TINY, "--max-iter", "0"], "--max-iter 0: must be at least 1"),
    (["attack", *TINY, "--attack", "pgd", "--eps", "-1"], "--eps -1.0: must be > 0"),
    (["saliency", *TINY, "--method", "smoothgrad", "--samples", "0"], "--samples 0"),
    (["classviz", *TINY, "--classes", "3", "--snapshot-every", "0"], "--snapshot-every 0"),
])
def test_bad_input_is_one_clear_error(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert main(["explain", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_explain_without_method_prints_help(capsys):
    assert main(["explain"]) == 1
    assert "saliency" in capsys.readouterr().out
