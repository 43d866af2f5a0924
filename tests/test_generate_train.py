"""GAN training on the shared loop: run folder contents, exact resume, clean stop on divergence,
the CLI (dry run, bad input) and the sweep."""

import json

import pytest
import torch

from cnnlab.errors import CnnlabError, TrainingDiverged
from cnnlab.generate.train import GANConfig, load_gan_data, train_gan
from test_generate_helpers import one_thread, patched_judge, tiny_judge  # noqa: F401  (fixtures)

TINY = dict(dataset="mnist-embedded", ngf=8, ndf=8, subset=256, batch_size=64, eval_samples=100, sample_every=2,
            precision="fp32", second_judge=False)


def _cfg(**kw):
    return GANConfig(**{**TINY, **kw})


def _train(tmp_path, name, figures=False, **kw):
    return train_gan(_cfg(**kw), out=tmp_path / name, seed=0, device="cpu", judge=tiny_judge(), figures=figures)


def test_run_folder_contents(tmp_path):
    res = _train(tmp_path, "run", epochs=2, figures=True)
    root = res.root
    m = json.loads((root / "metrics.json").read_text())
    assert m["steps"] == 8 and m["status"] == "finished" and m["precision"] == "fp32"
    assert set(m["final"]) >= {"frechet", "class_hist", "class_entropy", "confidence"}
    assert [r["epoch"] for r in m["tables"]["per_epoch"]] == [1, 2]  # judge metrics at every checkpoint
    assert all("frechet" in r for r in m["tables"]["per_epoch"])
    header = (root / "steps.csv").read_text().splitlines()
    assert header[0].split(",")[:7] == ["epoch", "step", "loss_D", "D_x", "D_G_z", "loss_G", "D_G_z_after"]
    assert len(header) == 1 + 8
    assert sorted(p.name for p in (root / "figures" / "progress").glob("*.png")) == [
        f"step_{s:06d}.png" for s in (2, 4, 6, 8)]
    for fig in ("curves", "progress_strip", "samples", "class_histogram", "judge_per_epoch"):
        assert (root / "figures" / f"{fig}.png").is_file()
    assert (root / "figures" / "progress.gif").is_file()
    ck = torch.load(root / "checkpoints" / "last.pt", weights_only=True)
    assert set(ck["modules"]) == {"G", "D"} and set(ck["optimizers"]) == {"G", "D"}
    assert ck["extra"]["fixed_z"].shape == (64, 100) and ck["step"] == 8 and "rng" in ck


def test_resume_equals_uninterrupted_run(tmp_path):
    full = _train(tmp_path, "full", epochs=2)
    _train(tmp_path, "cut", epochs=1)  # "interrupted" after epoch 1: its checkpoint is all that is left
    resumed = train_gan(_cfg(epochs=2), out=tmp_path / "cut", seed=0, device="cpu", judge=tiny_judge(), resume=True,
                        figures=False)
    for a, b in ((full.G, resumed.G), (full.D, resumed.D)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    log_full = (full.root / "steps.csv").read_text()
    assert log_full == (resumed.root / "steps.csv").read_text()
    assert full.metrics["final"]["frechet"] == resumed.metrics["final"]["frechet"]


def test_cdcgan_run_and_resume(tmp_path):
    kw = dict(model="cdcgan", ngf=8, ndf=8, epochs=2)
    full = _train(tmp_path, "full", figures=True, **kw)
    _train(tmp_path, "cut", **{**kw, "epochs": 1})
    resumed = train_gan(_cfg(**kw), out=tmp_path / "cut", seed=0, device="cpu", judge=tiny_judge(), resume=True,
                        figures=False)
    assert all(torch.equal(p, q) for p, q in zip(full.G.parameters(), resumed.G.parameters()))
    f = full.metrics["final"]
    assert 0.0 <= f["cond_acc"] <= 1.0 and len(f["class_hist"]) == 10
    assert (full.root / "figures" / "cdcgan_grid.png").is_file()
    assert torch.load(full.root / "checkpoints" / "last.pt", weights_only=True)["extra"]["fixed_y"].tolist() == \
        [c for c in range(10) for _ in range(15)]  # 15 z × 10 classes, class-major


def test_exploding_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    _train(tmp_path, "run", epochs=1)
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train_gan(_cfg(epochs=2, max_loss=1e-3), out=tmp_path / "run", seed=0, device="cpu", judge=tiny_judge(),
                  resume=True, figures=False)
    assert ckpt.read_bytes() == before  # epoch 1's checkpoint, untouched
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"].startswith("diverged")
    assert (tmp_path / "run" / "steps.csv").is_file()


def test_subset_is_a_fixed_sample_of_every_class():
    data = load_gan_data("mnist-embedded", size=32, subset=200)
    assert data.train.shape == (200, 1, 32, 32) and data.train.dtype == torch.uint8
    assert len(set(data.labels.tolist())) == 10  # the embedded set is sorted by class: not its first 200
    assert data.digits


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(CnnlabError, match="--g-loss"):
        _train(tmp_path, "x", g_loss="minimax")
    with pytest.raises(CnnlabError, match="fewer than one batch"):
        _train(tmp_path, "x", subset=10)
    with pytest.raises(CnnlabError, match="unknown dataset"):
        _train(tmp_path, "x", dataset="mnits")


def test_cli_dry_run_and_errors(tmp_path, patched_judge, capsys):
    from cnnlab.cli import main

    out = tmp_path / "cli"
    assert main(["gan", "train", "--dry-run", "--model", "cdcgan", "--ngf", "8", "--ndf", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conditional accuracy" in printed and str(out) in printed
    assert json.loads((out / "config.json").read_text())["config"]["model"] == "cdcgan"
    assert main(["gan", "train", "--dry-run", "--dataset", "cifar10", "--out", str(tmp_path / "c")]) == 2
    assert "needs --data-root" in capsys.readouterr().err
    assert main(["gan", "sweep", "--dry-run", "--variants", "defualt", "--out", str(tmp_path / "s")]) == 2
    assert "Did you mean default" in capsys.readouterr().err


def test_sweep_table_and_grid(tmp_path, patched_judge):
    from cnnlab.generate.studies import run_sweep

    base = _cfg(epochs=1)
    res = run_sweep(["default", "saturating", "nz10", "cdcgan-no-y"], base=base, out=tmp_path / "sweep", device="cpu",
                    extra={"cdcgan-no-y": {"ngf": 8, "ndf": 8}}, run_figures=False)
    assert [r["variant"] for r in res.rows] == ["default", "saturating", "nz10", "cdcgan-no-y"]
    assert all(isinstance(r["frechet"], float) for r in res.rows)
    assert res.rows[2]["steps"] == res.rows[0]["steps"]  # same budget
    assert json.loads((tmp_path / "sweep" / "nz10" / "config.json").read_text())["config"]["nz"] == 10
    assert res.grid.is_file() and res.figures["interpolation"].is_file()
    assert (tmp_path / "sweep" / "sweep.csv").read_text().startswith("variant,")


def test_user_image_folder_at_64(tmp_path):
    """Any image folder, RGB, 64×64 (one more block): trained and judged by distance only (not digits)."""
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for c in ("red", "blue"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(12):
            arr = (torch.rand(40, 48, 3, generator=rng) * 255).to(torch.uint8).numpy()
            arr[..., 0 if c == "red" else 2] = 255
            Image.fromarray(arr).save(tmp_path / "imgs" / c / f"{i}.png")
    res = train_gan(_cfg(dataset=f"imagefolder:{tmp_path / 'imgs'}", size=64, subset=None, batch_size=8,
                         eval_samples=20), out=tmp_path / "run", device="cpu", judge=tiny_judge(), figures=False)
    assert res.G(torch.randn(2, 100)).shape == (2, 3, 64, 64)
    assert set(res.metrics["final"]) == {"n", "frechet"}  # not digits: no class-based numbers
    assert res.metrics["train_images"] == 16  # the 70 % training split of 24 images
