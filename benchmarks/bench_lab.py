"""How long ``cnnlab lab`` takes on the embedded default: ``--quick`` (goal ≤ 3 min) and the full lab
(goal ≤ 15 min) on a 2-core machine, with the time of each part.

Each mode runs in a fresh subprocess with an empty cache (``$CNNLAB_CACHE`` in a temporary folder),
as on a new machine. The load average before and after is printed: these machines are shared, and a
busy machine makes every number larger. The per-part seconds are what ``cnnlab/lab_progress.py``'s
EXPECTED_SECONDS should hold.

    python benchmarks/bench_lab.py                 # both modes
    python benchmarks/bench_lab.py --modes quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"quick": 180.0, "full": 900.0}


def run_lab(mode: str, tmp: Path) -> tuple[float, dict]:
    out = tmp / f"lab-{mode}"
    env = dict(os.environ, CNNLAB_CACHE=str(tmp / f"cache-{mode}"), CNNLAB_PROGRESS="0")
    argv = [sys.executable, "-m", "cnnlab", "lab", "--out", str(out)] + (["--quick"] if mode == "quick" else [])
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=sys.stderr)  # the lab's own progress lines go to stderr
    wall = time.perf_counter() - t0
    parts = json.loads((out / "metrics.json").read_text()).get("part_seconds", {})
    return wall, parts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="quick,full", help="comma list of quick, full")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        for mode in args.modes.split(","):
            load0 = os.getloadavg()[0]
            wall, parts = run_lab(mode, Path(tmp))
            rows.append((mode, wall, parts, load0, os.getloadavg()[0]))
    print(f"\n{os.cpu_count()} CPUs")
    print(f"{'mode':6s} {'wall':>8s} {'goal':>6s} {'ratio':>6s}  {'load before/after':>17s}  per part (s)")
    for mode, wall, parts, l0, l1 in rows:
        per = ", ".join(f"{k} {v:.0f}" for k, v in parts.items())
        print(f"{mode:6s} {wall:7.0f}s {GOALS[mode]:5.0f}s {wall / GOALS[mode]:6.2f}  {l0:8.1f} / {l1:<7.1f}  {per}")
    print("ratio <= 1 meets the goal (quick <= 3 min, full <= 15 min, on a 2-core machine).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
