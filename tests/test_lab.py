"""`cnnlab lab --dry-run`: each part's sections hold real numbers and existing figures."""

import json
from pathlib import Path

from cnnlab.lab import LabContext, build_report, run_lab


def test_lab_part_a_dry_run_builds_a_report(tmp_path):
    md, html = run_lab(LabContext(out=tmp_path, dry_run=True), parts="A")
    sections = json.loads((tmp_path / "A-transfer" / "sections.json").read_text())
    qids = [s["qid"] for s in sections]
    assert qids == [f"A-Q{i}" for i in range(1, 12)]
    for s in sections:
        assert s["blocks"], s["qid"]
        for b in s["blocks"]:
            if "figure" in b:
                assert (tmp_path / "A-transfer" / b["figure"]).is_file()
    page = html.read_text()
    assert "138,357,544" in page and page.count("<h3 ") == 11
    metrics = json.loads((tmp_path / "A-transfer" / "metrics.json").read_text())
    assert 0 < metrics["digits_study"]["selected"]["test_acc"] <= 1
    # the report is rebuilt from the run folders alone
    (tmp_path / "report.html").unlink()
    build_report(tmp_path)
    assert Path(tmp_path / "report.html").exists()
