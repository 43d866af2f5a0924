"""``report.html`` opened from disk in a real browser: every figure loads, the table of contents leads
to a section for every question, and no section is empty.

Headless Chromium (Debian's ``chromium``, installed by ``.ci/run``; ``$CNNLAB_CHROMIUM`` names another
binary) opens a copy of the report, written next to it so that the figures' relative paths resolve,
with a script that runs once the page has loaded (every image fetched or failed) and writes what it
found into the DOM, which ``--dump-dom`` prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from run_compare import cli_env, cnnlab_cmd  # noqa: E402

CHECK_JS = r"""
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
  const sections = [...document.querySelectorAll('h3[id]')];
  const empty = [];
  for (const h of sections) {  // a section: everything after its heading, up to the next heading
    let n = h.nextElementSibling, text = '', media = 0;
    while (n && !/^H[1-3]$/.test(n.tagName) && n.id !== 'cnnlab-check') {
      if (n.tagName === 'SCRIPT') { n = n.nextElementSibling; continue; }  // this check itself
      text += n.textContent.trim();
      media += n.querySelectorAll('img, table').length + (/^(IMG|TABLE)$/.test(n.tagName) ? 1 : 0);
      n = n.nextElementSibling;
    }
    if (!text && !media) empty.push(h.id);
  }
  const toc = [...document.querySelectorAll('nav a[href^="#"]')].map(a => decodeURIComponent(a.hash.slice(1)));
  const out = document.createElement('pre');
  out.id = 'cnnlab-check';
  out.textContent = JSON.stringify({
    images: imgs.length, broken, sizes: imgs.map(i => [i.naturalWidth, i.naturalHeight]),
    sections: sections.map(h => h.id), empty, toc, unlinked: toc.filter(id => !document.getElementById(id)),
  });
  document.body.appendChild(out);
});
"""


def chromium() -> str | None:
    for name in (os.environ.get("CNNLAB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def render(report: Path, tmp_path: Path) -> dict:
    """What the browser saw in ``report`` (see CHECK_JS)."""
    browser = chromium()
    if browser is None:
        pytest.skip("no Chromium binary (apt-get install chromium, as .ci/run does; or set CNNLAB_CHROMIUM)")
    page = report.read_text(encoding="utf-8")
    assert page.count("</body>") == 1
    probe = report.with_name(".report-browser-check.html")  # beside the report: same relative figure paths
    probe.write_text(page.replace("</body>", f"<script>{CHECK_JS}</script></body>"), encoding="utf-8")
    try:
        proc = subprocess.run(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--allow-file-access-from-files", f"--user-data-dir={tmp_path / 'chromium-profile'}",
             "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    m = re.search(r'<pre id="cnnlab-check">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the check script did not run (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(m.group(1)))


def assert_report_ok(seen: dict) -> None:
    assert seen["images"] > 0, "the report shows no figure"
    assert not seen["broken"], f"figures that did not load: {seen['broken']}"
    assert all(w > 0 and h > 0 for w, h in seen["sizes"])
    assert seen["sections"], "no question section"
    assert not seen["empty"], f"empty sections: {seen['empty']}"
    assert seen["toc"] == seen["sections"], "the table of contents does not list the sections in order"
    assert not seen["unlinked"], seen["unlinked"]


def _figure(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def test_checker_sees_loaded_and_broken_figures_and_empty_sections(tmp_path):
    """Fast: a small report, with figure paths a browser could misread (space, '#', '%'), then the same
    report with a figure deleted and an empty section: the check must see both faults."""
    from cnnlab.report import Section, write_report

    out = tmp_path / "report dir"
    odd = _figure(out / "part one" / "figures" / "curve #1 (50%).png")
    plain = _figure(out / "figures" / "plain.png")
    sections = [Section("A-Q1", "First").text("Some **text**.").figure(odd, "odd name"),
                Section("A-Q2", "Second").table([{"a": 1, "b": 0.5}]).figure(plain, "plain"),
                Section("B-Q1", "Third").text("Words only.")]
    _, html_path = write_report(out, sections, title="check")
    seen = render(html_path, tmp_path)
    assert_report_ok(seen)
    assert seen["images"] == 2 and seen["sections"] == ["a-q1", "a-q2", "b-q1"]

    plain.unlink()
    write_report(out, sections + [Section("B-Q2", "Empty")], title="check")
    seen = render(html_path, tmp_path)
    assert len(seen["broken"]) == 1 and "plain.png" in seen["broken"][0]
    assert seen["empty"] == ["b-q2"]


def readme_lab_command() -> list[str]:
    """The README's first command, a new user's ``... && .venv/bin/cnnlab lab``, as the argv of its last
    step: the set-up steps before it are what this test environment already did."""
    from test_ci_matches_readme import _readme_commands

    steps = [s.strip() for s in _readme_commands()[0].split("&&")]
    assert steps[-1] == ".venv/bin/cnnlab lab", steps
    return steps[-1].split()[1:]  # ["lab"]: no --out, so the default runs/lab under the working directory


@pytest.mark.slow
def test_readmes_first_command_from_a_fresh_directory_gives_a_report_whose_figures_load(tmp_path):
    """As a new user: the README's command, run from a new working directory with the default --out
    (``--dry-run`` for time), then report.html opened from disk in a browser and report.md's links
    checked on disk."""
    from test_report_links import report_links, unresolved

    cwd = tmp_path / "fresh checkout"
    cwd.mkdir()
    script = Path(sys.executable).with_name("cnnlab")  # .venv/bin/cnnlab, the console script a user runs
    cmd = [str(script)] if script.exists() else cnnlab_cmd()
    proc = subprocess.run(cmd + readme_lab_command() + ["--dry-run", "--device", "cpu"], cwd=cwd, capture_output=True,
                          text=True, env=cli_env(tmp_path / "cache"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cwd / "runs" / "lab"
    seen = render(out / "report.html", tmp_path)
    assert_report_ok(seen)
    for part in "abcd":  # a section by question for every part
        assert any(re.fullmatch(f"{part}-q\\d+", s) for s in seen["sections"]), f"part {part} has no question"
    assert seen["images"] >= 20
    assert not unresolved(out), unresolved(out)
    assert len(report_links(out)["md"]) == seen["images"]  # the same figures in report.md
