"""Part B's lab section in dry-run mode: every question answered with real numbers and figures on disk."""

import math
from pathlib import Path

from cnnlab.explain.lab import run_lab
from cnnlab.lab import LabContext
from cnnlab.report import load_sections, save_sections
from test_explain_saliency import one_thread  # noqa: F401 (autouse fixture)


def _numbers(section):
    for b in section.blocks:
        for row in b.get("table", []):
            for v in row.values():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    yield v


def test_lab_dry_run_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ctx = LabContext(out=Path("lab"), dry_run=True)  # a relative --out, as users type it
    sections = run_lab(ctx)
    qids = [s.qid for s in sections]
    assert qids == ["B-Q0"] + [f"B-Q{i}" for i in range(1, 12)]
    for s in sections[1:]:
        assert list(_numbers(s)), f"{s.qid} has no measured number"
        assert any("text" in b for b in s.blocks), f"{s.qid} has no text"
        for b in s.blocks:
            if "figure" in b:
                assert Path(b["figure"]).is_file() and Path(b["figure"]).stat().st_size > 1000
    assert sum("figure" in b for s in sections for b in s.blocks) >= 12
    save_sections(ctx.part_dir("B-explain"), sections)
    part = tmp_path / "lab" / "B-explain"
    assert (part / "attacks.csv").is_file()
    for s in load_sections(part):  # the report resolves figures relative to the part folder
        for b in s.blocks:
            if "figure" in b:
                assert (part / b["figure"]).is_file(), b["figure"]
