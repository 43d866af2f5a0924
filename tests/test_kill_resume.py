"""Kill and resume: SIGKILL a long training and a long feature extraction at a random point; the rerun
with ``--resume`` finishes with the metrics of an uninterrupted run (timings aside, see run_compare.py)
and leaves no partial file behind.

The kill point is drawn from a seeded generator (``CNNLAB_KILL_SEED``, default 0) among moments when
the command has made durable progress (at least one checkpoint or extracted chunk) and has some left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from run_compare import cli_env, cnnlab_cmd, compare_run_folders, leftover_temporaries, run_cnnlab

pytestmark = pytest.mark.slow

KILL_SEED = int(os.environ.get("CNNLAB_KILL_SEED", "0"))


def _wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (exit {proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-2000:]}")
        if time.monotonic() > t_end:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _sigkill(proc: subprocess.Popen, what: str) -> None:
    assert proc.poll() is None, f"the command finished before the kill point ({what}); give it more work"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


# --------------------------------------------------------------------------- training (Part D's GAN)

GAN_EPOCHS = 12
GAN_ARGS = ["gan", "train", "--dataset", "mnist-embedded", "--subset", "1024", "--batch-size", "64",
            "--epochs", GAN_EPOCHS, "--eval-samples", "200", "--device", "cpu", "--seed", "0"]


def test_killed_gan_training_resumes_to_the_uninterrupted_result(tmp_path):
    cache = tmp_path / "cache"  # shared by the three runs: the judge network is trained once
    ref = tmp_path / "uninterrupted"
    run_cnnlab([*GAN_ARGS, "--out", ref], cache)

    rng = random.Random(KILL_SEED)
    after_epochs = rng.randint(1, GAN_EPOCHS - 3)  # checkpoints written before the kill
    extra = rng.uniform(0.0, 1.0)  # then this many seconds into the next epoch(s)
    out = tmp_path / "killed"
    ckpt = out / "checkpoints" / "last.pt"
    seen: list[tuple[int, int]] = []  # (inode, mtime) of each checkpoint: each one is written then renamed

    def checkpoints_written() -> bool:
        try:
            st = ckpt.stat()
        except FileNotFoundError:
            return False
        if not seen or seen[-1] != (st.st_ino, st.st_mtime_ns):
            seen.append((st.st_ino, st.st_mtime_ns))
        return len(seen) >= after_epochs

    proc = subprocess.Popen(cnnlab_cmd(*GAN_ARGS, "--out", out), env=cli_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(checkpoints_written, proc, 300, f"checkpoint {after_epochs}")
    time.sleep(extra)
    what = f"after checkpoint {after_epochs} + {extra:.2f} s (CNNLAB_KILL_SEED={KILL_SEED})"
    _sigkill(proc, what)
    done = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
    assert 1 <= done < GAN_EPOCHS, what

    run_cnnlab([*GAN_ARGS, "--out", out, "--resume"], cache)
    diffs = compare_run_folders(ref, out, {str(ref): "RUN", str(cache): "CACHE"}, {str(out): "RUN", str(cache): "CACHE"})
    assert not diffs, f"killed {what} at epoch {done}; resumed run differs:\n" + "\n".join(diffs[:30])
    assert not leftover_temporaries(out), leftover_temporaries(out)


# --------------------------------------------------------------------------- feature extraction (Part A)

# ResNet-18 (random weights, seeded) at 64×64 on the 5,000 embedded digits: ~20 s of extraction on one
# core, in chunks of CHUNK_IMAGES images (8 chunks for the train split).
TRANSFER_ARGS = ["transfer", "--arch", "resnet18", "--weights", "NONE", "--input-size", "64", "--dataset",
                 "mnist-embedded", "--layers", "pool", "--C", "1", "--cv", "2", "--no-pca", "--head-epochs", "0",
                 "--device", "cpu", "--seed", "0"]


def _feature_files(cache: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((cache / "features").glob("*.npy"))}


def test_killed_feature_extraction_resumes_to_the_same_features(tmp_path):
    from cnnlab.transfer.features import CHUNK_IMAGES

    ref_cache, ref = tmp_path / "cache-ref", tmp_path / "uninterrupted"
    run_cnnlab([*TRANSFER_ARGS, "--out", ref], ref_cache)

    n_chunks = -(-4000 // CHUNK_IMAGES)
    rng = random.Random(KILL_SEED)
    after_chunks = rng.randint(1, n_chunks - 2)
    extra = rng.uniform(0.0, 1.0)
    cache, out = tmp_path / "cache", tmp_path / "killed"

    def chunks_done() -> int:
        return sum(1 for _ in (cache / "features").glob("parts-*/*.json")) if (cache / "features").exists() else 0

    proc = subprocess.Popen(cnnlab_cmd(*TRANSFER_ARGS, "--out", out), env=cli_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: chunks_done() >= after_chunks, proc, 300, f"{after_chunks} extracted chunks")
    time.sleep(extra)
    what = f"after chunk {after_chunks} of {n_chunks} + {extra:.2f} s (CNNLAB_KILL_SEED={KILL_SEED})"
    _sigkill(proc, what)
    assert not (out / "metrics.json").exists(), what  # killed during the extraction, before any result
    assert chunks_done() < n_chunks, what

    run_cnnlab([*TRANSFER_ARGS, "--out", out, "--resume"], cache)
    diffs = compare_run_folders(ref, out, {str(ref): "RUN", str(ref_cache): "CACHE"}, {str(out): "RUN", str(cache): "CACHE"})
    assert not diffs, f"killed {what}; resumed run differs:\n" + "\n".join(diffs[:30])
    # the same cached features, byte for byte, and nothing partial left in the cache or the run folder
    ref_files, files = _feature_files(ref_cache), _feature_files(cache)
    assert sorted(files) == sorted(ref_files)
    for name, data in files.items():
        assert data == ref_files[name], f"{name} differs from the uninterrupted extraction ({what})"
    assert not list((cache / "features").glob("parts-*")), "chunk parts left after the merge"
    assert not leftover_temporaries(cache, out), leftover_temporaries(cache, out)
    a = np.load(cache / "features" / next(n for n in files if not n.endswith(".labels.npy")))
    assert a.shape[0] in (1000, 4000) and np.isfinite(a).all()
