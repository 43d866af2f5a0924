"""Determinism: the lab on its embedded default, run twice with the same seed on CPU, writes identical
``metrics.json`` files and CSV tables (timings aside, see run_compare.py).

The two runs are separate processes with separate, empty caches, so everything (the pretrained
digit networks, MNIST-M, the judge) is built twice; a third run reuses the first run's cache, as a
user's second run does. All use one thread: a different thread count changes the order of float
reductions and with it the last bits (README, "Reproducibility").
"""

from __future__ import annotations

import pytest

from run_compare import compare_run_folders, run_cnnlab

pytestmark = pytest.mark.slow


def test_lab_twice_with_the_same_seed_gives_identical_metrics(tmp_path):
    runs = {}
    for name, cache in (("first", "cache-a"), ("second", "cache-b"), ("cached", "cache-a")):
        out = tmp_path / name
        run_cnnlab(["lab", "--dry-run", "--seed", "3", "--device", "cpu", "--out", out], tmp_path / cache)
        runs[name] = (out, {str(out): "RUN", str(tmp_path / cache): "CACHE"})
    first, roots = runs["first"]
    for other in ("second", "cached"):
        out, other_roots = runs[other]
        diffs = compare_run_folders(first, out, roots, other_roots)
        assert not diffs, f"{other} run differs from the first:\n" + "\n".join(diffs[:40])
