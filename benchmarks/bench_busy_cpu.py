"""Benchmark: cnnlab on an idle CPU against the same run while one other CPU-bound process competes.

Each run is a fresh ``cnnlab`` process with an empty cache, as on a new machine. The competitor is a
Python busy loop started just before the run and stopped after it. cnnlab's own policy (threads for
the cores that others leave free, OpenMP threads that sleep instead of spinning: cnnlab/threads.py)
is measured against the policy it replaced (one thread per core, OpenMP's default spin-wait), which
``--threads <cores>`` with torch imported before cnnlab's CLI restores.

Workloads: ``lab`` = ``cnnlab lab --quick`` (goal: busy ≤ 2.2× idle), ``gan`` = one ``gan train``
epoch on 2,048 digits (where a competing process once cost 46×).

    python benchmarks/bench_busy_cpu.py                    # both workloads, new policy; old policy on gan
    python benchmarks/bench_busy_cpu.py --workloads gan
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

WORKLOADS = {
    "lab": ["lab", "--quick"],
    "gan": ["gan", "train", "--dataset", "mnist-embedded", "--judge", "mnist-embedded", "--epochs", "1",
            "--subset", "2048", "--eval-samples", "200"],
}


def run(argv: list[str], tmp: str, tag: str, busy: bool, old_policy: bool) -> float:
    env = dict(os.environ, CNNLAB_CACHE=os.path.join(tmp, f"cache-{tag}"), CNNLAB_PROGRESS="0")
    env.pop("OMP_NUM_THREADS", None)
    launcher, extra = [sys.executable, "-m", "cnnlab"], []
    if old_policy:  # torch imported before cnnlab's CLI: OpenMP keeps its default wait (spin, then sleep)
        env.pop("OMP_WAIT_POLICY", None)
        launcher = [sys.executable, "-c", "import sys, torch; from cnnlab.cli import main; sys.exit(main(sys.argv[1:]))"]
        extra = ["--threads", str(os.cpu_count())]
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        t0 = time.perf_counter()
        subprocess.run(launcher + argv + extra + ["--out", os.path.join(tmp, tag)], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="gan,lab", help="comma list of gan, lab")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
        for w in args.workloads.split(","):
            argv = WORKLOADS[w]
            idle = run(argv, tmp, f"{w}-idle", busy=False, old_policy=False)
            busy = run(argv, tmp, f"{w}-busy", busy=True, old_policy=False)
            old = run(argv, tmp, f"{w}-old", busy=True, old_policy=True) if w == "gan" else None
            rows.append((w, idle, busy, old))
            print(f"{w}: idle {idle:.1f} s, busy {busy:.1f} s" + (f", busy with the old policy {old:.1f} s" if old else ""),
                  file=sys.stderr)
    print(f"\n{os.cpu_count()} CPUs, one competing CPU-bound process in the busy runs")
    print(f"{'workload':10s} {'idle s':>8s} {'busy s':>8s} {'busy/idle':>10s} {'old policy busy s':>18s} {'old/idle':>9s}")
    for w, idle, busy, old in rows:
        o = f"{old:18.1f} {old / idle:9.2f}" if old else f"{'–':>18s} {'–':>9s}"
        print(f"{w:10s} {idle:8.1f} {busy:8.1f} {busy / idle:10.2f} {o}")
    print("goal: lab busy/idle <= 2.2 (issue 14)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
