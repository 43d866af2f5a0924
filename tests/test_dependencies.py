"""Every third-party package that cnnlab's code imports is declared in pyproject.toml (a package that
only arrives as another one's dependency can disappear with that package's next release)."""

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_top_level_modules(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"cnnlab", "__future__"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_canonical(re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    dists = md.packages_distributions()  # module name -> the distributions that provide it
    undeclared = {}
    for module in imported_top_level_modules(ROOT / "src" / "cnnlab"):
        provided_by = {_canonical(d) for d in dists.get(module, [module])}
        if not provided_by & declared:
            undeclared[module] = sorted(provided_by)
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"
