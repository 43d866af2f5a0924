"""Links in report.md and report.html resolve whatever ``--out`` is, and after the run folder moves.

A tiny stand-in part runs through the real ``cnnlab lab`` machinery (run folder, ``sections.json``,
report): it saves its figures where parts save theirs (``ctx.part_dir(...)/figures``, a path that is
relative when ``--out`` is) and hands them to ``Section.figure``.
"""

from __future__ import annotations

import re
import shutil
import sys
import types
import urllib.parse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from cnnlab import lab  # noqa: E402
from cnnlab.cli import main  # noqa: E402
from cnnlab.report import Section, link, write_report  # noqa: E402
from cnnlab.runs import Run  # noqa: E402


def report_links(folder: Path) -> dict[str, list[str]]:
    """Every local link (figures, files) of report.html and report.md in ``folder``."""
    page = (folder / "report.html").read_text(encoding="utf-8")
    md = (folder / "report.md").read_text(encoding="utf-8")
    return {"html": re.findall(r'<img src="([^"]+)"', page) + re.findall(r'href="([^"#][^"]*)"', page),
            "md": re.findall(r"\]\(([^)#][^)]*)\)", md)}


def unresolved(folder: Path) -> list[str]:
    """The links of ``folder``'s report that name no file on disk (a URL is percent-decoded first)."""
    return [f"{kind}: {u}" for kind, urls in report_links(folder).items() for u in urls
            if not (folder / urllib.parse.unquote(u)).is_file()]


def _tiny_part(ctx) -> list[Section]:
    run = Run.create(ctx.part_dir("A-transfer"), "lab-A", {}, ctx.seed)
    with run:
        sub = Run.create(run.root / "study one", "transfer", {}, ctx.seed)  # a nested run folder, as Part A has
        with sub:
            fig, ax = plt.subplots(figsize=(1.5, 1))
            ax.plot([0, 1])
            nested = sub.save_figure(fig, "curve #1 (50%)")
        fig, ax = plt.subplots(figsize=(1.5, 1))
        ax.plot([1, 0])
        top = run.save_figure(fig, "top5 digits")
    return [Section("A-Q1", "One").figure(top, "top figure"), Section("A-Q2", "Two").figure(nested, "nested")]


@pytest.fixture
def tiny_lab(monkeypatch):
    """``cnnlab lab`` with one tiny part A, so that a whole run takes a fraction of a second."""
    mod = types.ModuleType("cnnlab_test_tiny_part")
    mod.run_lab = _tiny_part
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(lab, "LAB_PARTS", (("A", "A-transfer", mod.__name__),))


OUT_FORMS = {
    "default": None,  # runs/lab
    "relative": "results/today",
    "dot": ".",
    "dotdot": "sub/../up one",
    "absolute": "ABS",
    "spaces": "my lab run",
    "non-ascii": "résultats/実験 ü",
}


@pytest.mark.parametrize("form", list(OUT_FORMS))
def test_report_links_resolve_for_every_form_of_out(form, tiny_lab, tmp_path, monkeypatch):
    cwd = tmp_path / "work dir"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = OUT_FORMS[form]
    if out == "ABS":
        out = str(tmp_path / "elsewhere" / "abs lab")
    argv = ["lab", "--dry-run", "--device", "cpu"] + ([] if out is None else ["--out", out])
    assert main(argv) == 0
    folder = Path(out if out is not None else "runs/lab").resolve()
    links = report_links(folder)
    assert len(links["html"]) == 2 and len(links["md"]) == 2, links
    assert not unresolved(folder), unresolved(folder)
    for urls in links.values():  # relative to the report: nothing absolute, nothing outside the folder
        assert all(not u.startswith(("/", "..", "file:")) for u in urls), urls


def test_report_links_resolve_after_the_run_folder_moves(tiny_lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["lab", "--dry-run", "--out", "first place"]) == 0
    before = report_links(tmp_path / "first place")
    moved = tmp_path / "archive" / "copied lab"
    shutil.copytree(tmp_path / "first place", moved)
    shutil.rmtree(tmp_path / "first place")  # nothing may still point at the old place
    for name in ("report.html", "report.md"):
        (moved / name).unlink()
    assert main(["report", str(moved)]) == 0
    assert report_links(moved) == before  # the same relative links
    assert not unresolved(moved), unresolved(moved)


def test_link_is_relative_posix_and_percent_encoded(tmp_path, monkeypatch):
    report_dir = tmp_path / "rep"
    target = tmp_path / "rep" / "a b" / "c#1 ü%.png"
    assert link(target, report_dir) == "a%20b/c%231%20%C3%BC%25.png"
    assert urllib.parse.unquote(link(target, report_dir)) == "a b/c#1 ü%.png"
    assert link(tmp_path / "other" / "x.png", report_dir) == "../other/x.png"
    # relative paths are taken from the working directory, as a user's shell does
    monkeypatch.chdir(tmp_path)
    assert link("rep/a b/c#1 ü%.png", "rep") == link(target, report_dir)


def test_a_relative_figure_path_means_the_working_directory(tmp_path, monkeypatch):
    """The bug a new user met: ``--out runs/lab`` joined onto the part's folder a second time."""
    monkeypatch.chdir(tmp_path)
    fig = Path("runs/lab/A-transfer/figures/f.png")
    fig.parent.mkdir(parents=True)
    fig.write_bytes(b"\x89PNG")
    write_report("runs/lab", [Section("A-Q1", "x").figure(fig, "f")])
    assert report_links(tmp_path / "runs" / "lab")["md"] == ["A-transfer/figures/f.png"]


def test_wide_tables_scroll_in_the_html_report(tmp_path):
    row = {f"column {i}": i / 7 for i in range(20)}
    _, html_path = write_report(tmp_path, [Section("C-Q1", "wide").table([row])])
    page = html_path.read_text(encoding="utf-8")
    assert '<div class="table-scroll"><table>' in page and ".table-scroll{max-width:100%;overflow-x:auto}" in page


def test_each_part_opens_with_its_setup_section(tmp_path):
    qids = ["A-Q2", "C-beyond", "C-tSNE", "A-setup", "C-Q1", "A-Q10", "C-setup", "A-Q1", "C-results"]
    md, _ = write_report(tmp_path, [Section(q, q).text("x") for q in qids])
    order = re.findall(r"^### ([A-D]-\w+):", md.read_text(encoding="utf-8"), re.M)
    assert order == ["A-setup", "A-Q1", "A-Q2", "A-Q10", "C-setup", "C-Q1", "C-results", "C-tSNE", "C-beyond"]
