"""Helpers for tests that compare whole run folders (determinism, kill and resume) and run the CLI
in a subprocess.

Which keys are timings: a run records how long things took next to what they measured, and wall-clock
times never repeat. A key is a timing when its name ends in ``seconds`` (``seconds``,
``train_seconds``, ``extract_seconds``, ``fit_seconds``, ``part_seconds``…) or ``per_s``
(``images_per_s``). Everything else must be identical, after the run folder's own path and the cache
path are replaced by placeholders (figures and cached weights are recorded by absolute path).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

TIMING_KEY = re.compile(r"(seconds|per_s)$")


def without_timings(obj: Any, roots: dict[str, str] | None = None) -> Any:
    """``obj`` with every timing key removed (recursively) and the given absolute paths replaced."""
    if isinstance(obj, dict):
        return {k: without_timings(v, roots) for k, v in obj.items() if not TIMING_KEY.search(str(k))}
    if isinstance(obj, list):
        return [without_timings(v, roots) for v in obj]
    if isinstance(obj, str) and roots:
        for path, name in roots.items():
            obj = obj.replace(path, name)
    return obj


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Human-readable paths where ``a`` and ``b`` differ (first values shown)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'second' if k not in a else 'first'}")
            else:
                out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def compare_run_folders(a: Path, b: Path, roots_a: dict[str, str], roots_b: dict[str, str],
                        *, csv_tables: bool = True) -> list[str]:
    """Every ``metrics.json`` (and CSV table) under ``a`` against the same file under ``b``, timings
    removed. Returns the differences (empty: identical)."""
    found = sorted(p.relative_to(a) for p in a.rglob("metrics.json"))
    assert found, f"no metrics.json under {a}"
    diffs = []
    others = sorted(p.relative_to(b) for p in b.rglob("metrics.json"))
    if found != others:
        diffs.append(f"metrics.json files differ: {found} vs {others}")
    for rel in found:
        if not (b / rel).exists():
            continue
        ma = without_timings(json.loads((a / rel).read_text()), roots_a)
        mb = without_timings(json.loads((b / rel).read_text()), roots_b)
        diffs += [f"{rel}{d}" for d in differences(ma, mb)]
    if csv_tables:
        for p in sorted(a.rglob("*.csv")):
            rel = p.relative_to(a)
            if (b / rel).exists():
                ra = without_timings(_csv_rows(p), roots_a)
                rb = without_timings(_csv_rows(b / rel), roots_b)
                diffs += [f"{rel}{d}" for d in differences(ra, rb)]
            else:
                diffs.append(f"{rel}: missing in {b}")
    return diffs


def cli_env(cache: Path, threads: int = 1) -> dict[str, str]:
    """Environment for a ``python -m cnnlab`` subprocess: its own cache, fixed thread count, no bars."""
    env = dict(os.environ)
    env.update(CNNLAB_CACHE=str(cache), CNNLAB_PROGRESS="0", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), PYTHONHASHSEED="0")
    return env


def cnnlab_cmd(*args: Any) -> list[str]:
    return [sys.executable, "-m", "cnnlab", *map(str, args)]


def run_cnnlab(args: list, cache: Path, *, timeout: float = 600, threads: int = 1,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cnnlab_cmd(*args), env=cli_env(cache, threads), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, f"cnnlab {' '.join(map(str, args))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def leftover_temporaries(*roots: Path) -> list[Path]:
    """Files an interrupted atomic write could leave: ``.<name>.XXXX.tmp`` and ``*.tmp.npy``."""
    return [p for r in roots if r.exists() for p in r.rglob("*")
            if p.is_file() and (p.suffix == ".tmp" or ".tmp." in p.name)]
