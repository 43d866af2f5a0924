"""Part C's lab section (dry run) and the CLI's error messages."""

import math
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.lab import LabContext


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_run_lab_dry_run_has_numbers_and_figures(tmp_path):
    from cnnlab.adapt.lab import run_lab

    sections = run_lab(LabContext(out=tmp_path, dry_run=True))
    qids = [s.qid for s in sections]
    assert {"C-setup", "C-results", "C-Q1", "C-Q2", "C-Q3", "C-Q4", "C-beyond", "C-tSNE"} <= set(qids)
    tables = [b["table"] for s in sections for b in s.blocks if "table" in b]
    nums = [v for t in tables for row in t for v in row.values() if isinstance(v, float)]
    assert len(nums) > 20 and all(math.isfinite(v) for v in nums)
    accs = [row["target test acc (last)"] for row in sections[qids.index("C-results")].blocks[1]["table"]]
    assert all(0.0 <= a <= 1.0 for a in accs)
    # C-Q4 says where self-training started, and that is where it did (the default rule: the last epoch)
    q4 = " ".join(b["text"] for b in sections[qids.index("C-Q4")].blocks if "text" in b)
    assert "starting from the last epoch" in q4, q4
    # beyond the course: VADA and its DIRT-T refinement sit in the same table as DANN, and C-beyond compares them
    models = [row["model"] for row in sections[qids.index("C-beyond")].blocks[1]["table"]]
    assert models == ["source only", "DANN", "VADA", "VADA + DIRT-T"], models
    figs = [Path(b["figure"]) for s in sections for b in s.blocks if "figure" in b]
    assert len(figs) >= 7
    for f in figs:
        assert f.is_file() and f.stat().st_size > 1000 and f.parent == tmp_path / "C-adapt" / "figures", f


@pytest.mark.parametrize("argv, msg", [
    (["adapt", "--lambda-schedule", "cosine"], "lambda-schedule"),
    (["adapt", "--studies", "everything"], "--studies"),
    (["adapt", "--source", "mnist-embedded", "--target", "mnist-embedded"], "two different domains"),
    (["adapt", "--photos", "/nonexistent/photos"], "not a folder"),
    (["adapt", "--source", "mnist"], "--data-root"),
    (["adapt", "--methods", "dann,magic"], "unknown method"),
])
def test_cli_errors_are_one_clear_line(argv, msg, tmp_path, capsys):
    rc = main(argv + ["--out", str(tmp_path / "run"), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err


def test_mnistm_command_dry_run(tmp_path, capsys):
    assert main(["mnistm", "--dry-run", "--photos", "embedded", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "figures" / "samples.png").is_file() and (tmp_path / "mnistm.csv").is_file()
