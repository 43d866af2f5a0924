"""Integration: `cnnlab lab` (all four parts, --dry-run budgets) on the embedded default answers every part with real figures."""

import json
import re
from html.parser import HTMLParser

import pytest

from cnnlab.cli import main


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.mark.slow
def test_lab_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "lab"
    assert main(["lab", "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed
    page = (out / "report.html").read_text()
    qids = re.findall(r'<h3 id="([a-d]-q\d+)"', page)
    for part in "abcd":
        assert any(q.startswith(part) for q in qids), f"part {part} missing from the report"
    parser = _Images()
    parser.feed(page)
    assert parser.srcs, "the report shows no figure"
    for src in parser.srcs:
        assert (out / src).is_file(), src
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["part_seconds"]) == set("ABCD")
    # --resume keeps finished parts and rebuilds the same report
    assert main(["lab", "--dry-run", "--resume", "--out", str(out)]) == 0
    assert "already done" in capsys.readouterr().out
