"""CI runs exactly what the README tells a new user: its two commands, on a clean checkout."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    """The shell lines of the README's code blocks that set up a fresh machine (``python3 -m venv ...``)."""
    blocks = re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip().startswith("python3 -m venv")]


def test_readme_opens_with_the_two_fresh_machine_commands():
    cmds = _readme_commands()
    assert len(cmds) >= 2
    setup_and_lab, setup_and_tests = cmds[0], cmds[1]
    assert setup_and_lab.endswith("cnnlab lab") and "pip install -e ." in setup_and_lab
    assert "pip install -e '.[test]'" in setup_and_tests and setup_and_tests.endswith("-m pytest")


def test_ci_runs_the_readmes_test_command_verbatim_and_installs_what_it_needs():
    test_cmd = _readme_commands()[1]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.strip().startswith("#")]
    assert test_cmd in ci  # the same line, character for character, not a paraphrase of it
    assert "set -euo pipefail" in ci  # a failing install or test fails CI
    assert any("apt-get install" in line and "chromium" in line for line in ci)  # the browser test's dependency
    # the slow tests run deliberately after the README's suite (exit 5, nothing collected, fails under set -e)
    assert ci.index(test_cmd) < next(i for i, line in enumerate(ci) if "-m slow" in line)
