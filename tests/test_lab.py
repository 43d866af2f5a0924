"""`cnnlab lab --dry-run`: each part's sections hold real numbers and existing figures."""

import json
from pathlib import Path

import pytest

from cnnlab.lab import LabContext, build_report, run_lab


def test_lab_part_a_dry_run_builds_a_report(tmp_path):
    md, html = run_lab(LabContext(out=tmp_path, dry_run=True), parts="A")
    sections = json.loads((tmp_path / "A-transfer" / "sections.json").read_text())
    qids = [s["qid"] for s in sections]
    assert qids == ["A-setup"] + [f"A-Q{i}" for i in range(1, 12)]
    setup = sections[0]["blocks"][0]["text"]
    assert "embedded study" in setup and "15 Scene study is skipped" in setup  # which data, and what is not run
    for s in sections:
        assert s["blocks"], s["qid"]
        for b in s["blocks"]:
            if "figure" in b:
                assert (tmp_path / "A-transfer" / b["figure"]).is_file()
    page = html.read_text()
    assert "138,357,544" in page and page.count("<h3 ") == 12
    metrics = json.loads((tmp_path / "A-transfer" / "metrics.json").read_text())
    assert 0 < metrics["digits_study"]["selected"]["test_acc"] <= 1
    # the report is rebuilt from the run folders alone
    (tmp_path / "report.html").unlink()
    build_report(tmp_path)
    assert Path(tmp_path / "report.html").exists()


def test_lab_progress_scales_time_left_by_the_pace_so_far(monkeypatch):
    import io
    import logging

    from cnnlab import lab_progress
    from cnnlab.lab_progress import LabProgress

    now = [0.0]
    monkeypatch.setattr(lab_progress.time, "perf_counter", lambda: now[0])
    monkeypatch.setitem(lab_progress.EXPECTED_SECONDS, "test", {"A": 10.0, "B": 30.0, "C": 60.0})
    out = io.StringIO()
    p = LabProgress(["A", "B", "C"], "test", every=5, stream=out)
    p.skip_part("C")  # resumed: no longer counted
    assert p.seconds_left() == 40.0 and p.fraction() == 0.0
    p.start_part("A")
    now[0] = 20.0
    p.end_part("A", 20.0)  # twice as slow as expected
    assert p.pace() == 2.0 and p.fraction() == 0.25
    p.start_part("B")
    assert p.seconds_left() == 60.0  # B's 30 s at this machine's pace
    now[0] = 50.0
    assert p.seconds_left() == 30.0
    rec = logging.LogRecord("cnnlab", logging.INFO, __file__, 1, "DANN epoch 3/20", None, None)
    p.emit(rec)
    assert out.getvalue().splitlines()[-1] == "[lab 62% · Part B 0:30 · DANN epoch 3/20 · 0:50 elapsed · ~30 s left]"
    now[0] = 52.0
    p.emit(rec)  # throttled: at most one line every 5 s
    assert len(out.getvalue().splitlines()) == 4


@pytest.mark.slow
def test_lab_part_a_runs_the_imagenet_study_with_a_user_weights_file(tmp_path, monkeypatch):
    """`cnnlab lab --arch mobilenet_v2 --weights FILE --data-root DATA`: the course's 15 Scene study runs
    next to the embedded one (random weights and a tiny synthetic 15 Scene stand in for the real ones)."""
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    from cnnlab.cli import main

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "mnv2.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), weights)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("bedroom", "coast", "forest"):
            d = tmp_path / "data" / "15scene" / split / c
            d.mkdir(parents=True)
            for i in range(5):
                Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).resize((250, 200)).save(d / f"{i}.jpg")
    out = tmp_path / "lab"
    assert main(["lab", "--parts", "A", "--dry-run", "--arch", "mobilenet_v2", "--weights", str(weights),
                 "--mean", "0.5", "--std", "0.5", "--data-root", str(tmp_path / "data"), "--out", str(out)]) == 0
    m = json.loads((out / "A-transfer" / "metrics.json").read_text())
    real = m["imagenet_study"]
    assert real["dataset"] == "15scene" and real["arch"] == "mobilenet_v2"
    assert real["classes"] == ["bedroom", "coast", "forest"] and real["n_test"] == 15
    assert 0 <= real["selected"]["test_acc"] <= 1
    for fig in real["figures"].values():
        assert Path(fig).is_file() or (out / "A-transfer" / fig).is_file()
    assert "15scene" in (out / "report.md").read_text()


def test_lab_progress_follows_a_slow_pace_inside_the_first_part(monkeypatch):
    import io

    from cnnlab import lab_progress
    from cnnlab.lab_progress import LabProgress

    now = [0.0]
    monkeypatch.setattr(lab_progress.time, "perf_counter", lambda: now[0])
    monkeypatch.setitem(lab_progress.EXPECTED_SECONDS, "test", {"A": 100.0, "B": 100.0})
    p = LabProgress(["A", "B"], "test", stream=io.StringIO())
    p.start_part("A")
    now[0] = 50.0
    assert p.pace() == 1.0 and p.seconds_left() == 150.0  # on time: no change
    now[0] = 400.0  # A has run 4x its expected time: B is expected 4x slower too, and the estimate keeps growing
    assert p.pace() == 4.0 and p.seconds_left() >= 400.0
    now[0] = 800.0
    assert p.seconds_left() >= 800.0


def test_the_lab_states_its_expected_time_by_data_and_mode_before_it_starts():
    from cnnlab.lab_progress import COURSE_SECONDS, EXPECTED_SECONDS, plan_text

    embedded = plan_text("ABCD", "full")
    course = plan_text("ABCD", "full", {"A", "B", "C", "D"})
    quick = plan_text("ABCD", "quick", {"C"})
    assert f"~{round(sum(EXPECTED_SECONDS['full'].values()) / 60)} min" in embedded and "course data" not in embedded
    assert "`--quick` takes ~" in embedded and "`--quick`" not in quick  # --quick already shortens it
    assert "C ~" in quick and "(course data)" in quick and quick.count("(course data)") == 1
    total = sum(COURSE_SECONDS["full"].values())
    assert (f"~{total / 3600:.1f} h" if total >= 5400 else f"~{round(total / 60)} min") in course


def test_each_part_says_whether_it_finds_the_courses_data(tmp_path, monkeypatch):
    import numpy as np

    from cnnlab import adapt, explain, generate, transfer  # noqa: F401
    from cnnlab.adapt import lab as c
    from cnnlab.explain import lab as b
    from cnnlab.generate import lab as d
    from cnnlab.lab import LabContext
    from cnnlab.transfer import lab as a

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))  # no cached VGG16/SqueezeNet weights
    root = tmp_path / "data"
    bare = LabContext(out=tmp_path, data_root=root, arch="mobilenet_v2", weights=str(tmp_path / "w.pth"))
    assert [m.uses_course_data(bare) for m in (a, b, c, d)] == [False] * 4
    (root / "15scene").mkdir(parents=True)
    np.savez(root / "imagenet_val_25.npz", x=np.zeros(1))
    assert [m.uses_course_data(bare) for m in (a, b)] == [True, True]
    no_model = LabContext(out=tmp_path, data_root=root)
    assert [m.uses_course_data(no_model) for m in (a, b)] == [False, False]  # the data alone is not the course's study
