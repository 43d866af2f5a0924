"""Part D's lab section in dry-run mode: every question answered with real numbers and figures."""

import math
from pathlib import Path

from cnnlab.lab import LabContext
from test_generate_helpers import one_thread, patched_judge  # noqa: F401  (fixtures)


def test_lab_dry_run_sections(tmp_path, patched_judge):
    from cnnlab.generate.lab import run_lab
    from cnnlab.report import save_sections

    sections = run_lab(LabContext(out=tmp_path, dry_run=True))
    qids = [s.qid for s in sections]
    assert qids == ["D-setup", "D-Q1", "D-Q2", "D-Q3", "D-Q4", "D-Q5", "D-Q6", "D-Q8", "D-Q9",
                    "D-beyond"]  # dry run: no D-Q7
    setup = sections[0].blocks[0]["text"]
    assert "embedded offline default" in setup and "1 epoch of batch 64" in setup  # which data, which budget
    tables = {s.qid: [b for b in s.blocks if "table" in b] for s in sections}
    assert all(tables[q] for q in qids[1:])
    fd = [r["frechet"] for r in tables["D-Q5"][0]["table"]]
    assert len(fd) == 4 and all(isinstance(v, float) and math.isfinite(v) for v in fd)
    q6 = next(b["text"] for b in next(s for s in sections if s.qid == "D-Q6").blocks if "text" in b)
    assert "n/a" not in q6
    figs = [Path(b["figure"]) for s in sections for b in s.blocks if "figure" in b]
    assert len(figs) >= 8 and all(f.is_file() for f in figs)
    beyond = sections[-1]
    text = " ".join(b["text"] for b in beyond.blocks if "text" in b)
    assert "--preset strong" in text and "LeNet-5" in text and "n/a against" not in text
    assert [r["variant"] for r in next(b for b in beyond.blocks if "table" in b)["table"]] == ["default", "strong"]
    assert any(Path(b["figure"]).name == "strong_vs_course.png" for b in beyond.blocks if "figure" in b)
    save_sections(tmp_path / "D-gan", sections)
    assert (tmp_path / "D-gan" / "sections.json").is_file()
