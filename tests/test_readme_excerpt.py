"""The README's report excerpt is cut from a real run by scripts/readme_excerpt.py, never typed: the
slow test reruns that run (``cnnlab lab --parts A``, one thread, a fresh cache) and compares."""

import sys
from pathlib import Path

import pytest

from run_compare import run_cnnlab

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import readme_excerpt  # noqa: E402

REPORT = """# t

<a id="a-q1"></a>
### A-Q1: Number of parameters

Counted: **10 parameters**.

*a caption*

| layer | parameters |
|---|---|
| fc | 10 |

<a id="a-q8"></a>
### A-Q8: Impact of the layer

*study: each layer at its CV-chosen C*

| layer | dim | best C (by CV) | cv_acc | test_acc |
|---|---|---|---|---|
| conv | 3136 | 10 | 0.91 | 0.9477 |

![grid](A-transfer/figures/svm_grid.png)

*grid*

Text after.
"""


def test_excerpt_keeps_a_q1s_first_paragraph_and_a_q8s_table():
    out = readme_excerpt.excerpt(REPORT)
    assert out.startswith("### A-Q1: Number of parameters\n\nCounted: **10 parameters**. …\n\n### A-Q8")
    assert "| conv | 3136 | 10 | 0.91 | 0.9477 |\n\n![grid](A-transfer/figures/svm_grid.png)" in out
    assert "| fc | 10 |" not in out and "Text after." not in out


def test_readme_holds_an_excerpt_between_its_markers():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme_excerpt.readme_block(readme)
    assert "native bf16:" in readme_excerpt.readme_machine(readme)
    assert block.startswith("### A-Q1: Number of parameters") and "### A-Q8: Impact of the layer" in block
    assert "| layer | dim | best C (by CV) | cv_acc | test_acc |" in block


@pytest.mark.slow
def test_readme_excerpt_is_what_the_lab_writes(tmp_path):
    made_on = readme_excerpt.readme_machine((ROOT / "README.md").read_text(encoding="utf-8"))
    if made_on != readme_excerpt.machine():  # another CPU gives other last bits, and can tip a CV choice
        pytest.skip(f"the README's excerpt was made on {made_on!r}, this is {readme_excerpt.machine()!r}: "
                    "regenerate it here with scripts/readme_excerpt.py (see its docstring)")
    run_cnnlab(["lab", "--parts", "A", "--device", "cpu", "--out", tmp_path / "lab"], tmp_path / "cache", timeout=1200)
    fresh = readme_excerpt.excerpt((tmp_path / "lab" / "report.md").read_text(encoding="utf-8"))
    assert readme_excerpt.readme_block((ROOT / "README.md").read_text(encoding="utf-8")) == fresh, (
        "the README's excerpt is not what `cnnlab lab --parts A` writes today; rerun "
        "scripts/readme_excerpt.py on such a run (see its docstring)")
