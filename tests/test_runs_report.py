"""Run folders and reports."""

import json
import os

import matplotlib.pyplot as plt
import pytest

from cnnlab.errors import CnnlabError
from cnnlab.report import Section, load_sections, save_sections, write_report
from cnnlab.runs import Run


def test_run_folder_holds_config_versions_metrics_tables_figures(tmp_path):
    with Run.create(tmp_path / "r", "test", {"lr": 0.1}, seed=7) as run:
        run.log_metrics(acc=0.5)
        run.write_table("grid", [{"C": 1, "acc": 0.5}, {"C": 10, "acc": 0.6, "extra": 1}])
        fig, ax = plt.subplots()
        path = run.save_figure(fig, "f")
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["seed"] == 7 and cfg["config"] == {"lr": 0.1} and "torch" in cfg["versions"]
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["acc"] == 0.5 and m["tables"]["grid"][1]["extra"] == 1
    assert (tmp_path / "r" / "grid.csv").read_text().splitlines()[0] == "C,acc,extra"
    assert path.exists() and path.stat().st_size > 0
    assert not [p for p in (tmp_path / "r").rglob("*.tmp")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(CnnlabError, match="cannot write there"):
        Run.create(ro / "x", "t", {}, 0)


def test_unwritable_out_file_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CnnlabError, match="cannot write there"):
        Run.create(blocker / "run", "t", {}, 0)


def test_report_escapes_names_and_links_figures(tmp_path):
    part = tmp_path / "A-transfer"
    part.mkdir()
    fig, ax = plt.subplots()
    fig.savefig(part / "fig.png")
    s = Section("A-Q2", "Last layer").text("class <script>alert(1)</script> **bold**")
    s.table([{"class": "<img src=x onerror=alert(1)>", "acc": 0.5}]).figure(part / "fig.png", "cap")
    save_sections(part, [s, Section("A-Q1", "Params").text("first")])
    loaded = load_sections(part)
    md, html = write_report(tmp_path, loaded)
    page = html.read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "<img src=x" not in page
    assert 'src="A-transfer/fig.png"' in page and "<strong>bold</strong>" in page
    assert page.index('id="a-q1"') < page.index('id="a-q2"')  # sorted by question
    assert "(A-transfer/fig.png)" in md.read_text()
