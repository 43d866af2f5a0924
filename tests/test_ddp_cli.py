"""Several processes through the CLI: ``torchrun`` with 2 CPU processes (gloo on loopback).

Training goes through DistributedDataParallel: the GAN's G and D (with synchronised BatchNorm), DANN
with its domain head, and transfer fine-tuning. Every test launches real ``torchrun`` processes, so
they are marked slow (each launch imports torch in two processes).
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

GAN = ["gan", "train", "--dataset", "mnist-embedded", "--judge", "mnist-embedded", "--subset", "256",
       "--batch-size", "32", "--eval-samples", "100", "--precision", "fp32", "--sample-every", "1000"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One cache for the module (the GAN judge is trained once), one thread per process as under torchrun."""
    root = tmp_path_factory.mktemp("ddp")
    (root / "tmp").mkdir()
    return dict(os.environ, CNNLAB_CACHE=str(root / "cache"), CNNLAB_PROGRESS="0", OMP_NUM_THREADS="1",
                TMPDIR=str(root / "tmp"), PYTHONWARNINGS="ignore")


def cnnlab(argv, env, nproc: int = 1, **kw) -> subprocess.CompletedProcess:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
                if nproc > 1 else [sys.executable])
    return subprocess.run(launcher + ["-m", "cnnlab"] + argv, env=env, capture_output=True, text=True, timeout=600, **kw)


def checkpoint(folder, name: str = "last.pt") -> dict:
    """A GAN run's checkpoint (checkpoints/last.pt), or another one under checkpoints/."""
    return torch.load(Path(folder) / "checkpoints" / name, map_location="cpu", weights_only=True)


# Loaded by Python at start-up from PYTHONPATH: every rank saves its modules whenever a training ends
# (only rank 0 writes checkpoints), so that the test can compare the ranks.
DUMP_RANKS = """
import os
if os.environ.get("RANK") is not None:
    import torch
    import cnnlab.train as t
    _fit = t.fit
    def fit(state, **kw):
        out = _fit(state, **kw)
        torch.save({"modules": {k: m.state_dict() for k, m in state.modules.items()}},
                   os.path.join(os.environ["RANK_DUMPS"], f"rank{os.environ['RANK']}.pt"))
        return out
    t.fit = fit
"""


def with_rank_dumps(env, tmp_path) -> dict:
    hook = tmp_path / "dump_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(DUMP_RANKS)
    return dict(env, PYTHONPATH=str(hook), RANK_DUMPS=str(tmp_path))


def mean_abs_diff(a: dict, b: dict) -> float:
    """Mean |a − b| over every float entry of the checkpoints' modules (weights and BatchNorm buffers)."""
    d = [(b["modules"][n][k] - v).abs().mean().item() for n in a["modules"] for k, v in a["modules"][n].items()
         if v.is_floating_point()]
    return sum(d) / len(d)


def summation_noise(argv, env, tmp_path) -> float:
    """How far one process lands from itself when only the order of its float sums changes (1 thread
    against 2). Two processes compute the same maths as one (equal shards of the same global batch,
    gradients averaged by DDP, BatchNorm statistics summed over ranks) in another summation order, so
    this is the yardstick: Adam turns a near-zero gradient whose sign the rounding decides into a
    ±lr step, so single entries differ by up to steps × lr either way, and the mean tells them apart."""
    runs = []
    for threads in ("1", "2"):
        out = tmp_path / f"noise{threads}"
        r = cnnlab(argv + ["--out", str(out)], dict(env, OMP_NUM_THREADS=threads))
        assert r.returncode == 0, r.stderr
        runs.append(checkpoint(out))
    return mean_abs_diff(*runs)


def bn_buffers(sd: dict) -> dict:
    return {(n, k): v for n, m in sd["modules"].items() for k, v in m.items() if "running_" in k}


def test_dcgan_with_two_processes_matches_one_process_and_batchnorm_is_synchronised(env, tmp_path):
    argv = GAN + ["--epochs", "1", "--subset", "96"]  # 3 steps of 32: before the GAN's chaos amplifies rounding
    noise = summation_noise(argv, env, tmp_path)
    one = checkpoint(tmp_path / "noise1")
    two = cnnlab(argv + ["--out", str(tmp_path / "two")], with_rank_dumps(env, tmp_path), nproc=2)
    assert two.returncode == 0, two.stderr
    b = checkpoint(tmp_path / "two")
    assert one["step"] == b["step"] == 3
    assert mean_abs_diff(one, b) <= 2 * noise  # measured: 1.0x the noise (5e-6)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for (n, k), v in bn_buffers(b).items():  # every rank holds the same BatchNorm statistics, bit for bit
        assert torch.equal(r1["modules"][n][k], v), (n, k)

    local = cnnlab(argv + ["--no-sync-bn", "--out", str(tmp_path / "local")], with_rank_dumps(env, tmp_path), nproc=2)
    assert local.returncode == 0, local.stderr
    c, r1 = checkpoint(tmp_path / "local"), torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert mean_abs_diff(one, c) > 10 * noise  # per-rank statistics: another result (measured: 65x the noise)
    assert any(not torch.equal(r1["modules"][n][k], v) for (n, k), v in bn_buffers(c).items())


def _wait_for(path: Path, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.2)


def test_kill_9_mid_run_then_resume_with_two_or_one_process_gives_the_uninterrupted_result(env, tmp_path):
    argv = GAN + ["--epochs", "3", "--subset", "512", "--sample-every", "20"]  # 16 steps an epoch
    full = cnnlab(argv + ["--out", str(tmp_path / "full")], env, nproc=2)
    assert full.returncode == 0, full.stderr
    killed = tmp_path / "killed"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.Popen(launcher + ["-m", "cnnlab"] + argv + ["--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for(killed / "figures" / "progress" / "step_000020.png")  # step 20: in the middle of epoch 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint(killed)["epoch"] in (1, 2)
    subprocess.run(["cp", "-r", str(killed), str(tmp_path / "killed1")], check=True)

    two = cnnlab(argv + ["--out", str(killed), "--resume"], env, nproc=2)
    assert two.returncode == 0, two.stderr
    one = cnnlab(argv + ["--out", str(tmp_path / "killed1"), "--resume"], env)
    assert one.returncode == 0, one.stderr
    ref = checkpoint(tmp_path / "full")
    assert checkpoint(killed)["step"] == checkpoint(tmp_path / "killed1")["step"] == ref["step"] == 48
    # same world size: the resumed run repeats the uninterrupted one exactly (every RNG state is restored)
    assert mean_abs_diff(ref, checkpoint(killed)) == 0.0
    # one process after two: the same maths, float sums in another order
    assert mean_abs_diff(ref, checkpoint(tmp_path / "killed1")) <= 2 * summation_noise(argv, env, tmp_path)


# Loaded by Python at start-up from PYTHONPATH: on rank 1 only, training raises in its second step.
FAIL_ON_RANK_1 = """
import os
if os.environ.get("RANK") == "1":
    import cnnlab.train as t
    _epochs = t._epochs
    def failing(state, loop):
        step = loop.step
        def boom(st, batch):
            if st.step == 1:
                raise RuntimeError("injected failure on rank 1")
            return step(st, batch)
        return _epochs(state, t._Loop(**{**loop.__dict__, "step": boom}))
    t._epochs = failing
"""


def test_a_rank_that_fails_ends_every_rank_quickly_with_one_error_line(env, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAIL_ON_RANK_1)
    t0 = time.time()
    run = cnnlab(GAN + ["--epochs", "2", "--out", str(tmp_path / "fail1")], dict(env, PYTHONPATH=str(hook)), nproc=2)
    assert run.returncode != 0 and time.time() - t0 < 60
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: rank 1: RuntimeError: injected failure on rank 1"], run.stderr
    assert not re.search(r'File ".*cnnlab/', run.stderr)  # no traceback from cnnlab (torchrun prints its own summary)

    # the same bad input on every rank: one line, from rank 0
    t0 = time.time()
    run = cnnlab(["adapt", "--source", "mnist-embedded", "--target", f"imagefolder:{tmp_path / 'missing'}",
                  "--dry-run", "--out", str(tmp_path / "fail2")], env, nproc=2)
    assert run.returncode != 0 and time.time() - t0 < 60
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: rank 0: ") and "missing" in errors[0], run.stderr


def test_dann_and_fine_tuning_run_under_two_processes_and_match_one_process(env, tmp_path):
    adapt = ["adapt", "--source", "mnist-embedded", "--subset", "256", "--methods", "source-only,dann,vada",
             "--val-size", "24", "--source-only-epochs", "1", "--dann-epochs", "1", "--pl-rounds", "0",
             "--dirtt-rounds", "0", "--batch-size", "32", "--dann-batch-size", "16", "--precision", "fp32"]
    one = cnnlab(adapt + ["--out", str(tmp_path / "a1")], env)
    two = cnnlab(adapt + ["--out", str(tmp_path / "a2")], with_rank_dumps(env, tmp_path), nproc=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    # VADA (trained last, so the ranks' dumps hold it): VAT's power iteration (ξ = 1e-6) works at fp32's
    # rounding limit, so splitting the batch across processes turns its direction a little; VADA matches
    # one process only in distribution. What DDP guarantees: both ranks hold the same weights and average.
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True)["modules"] for r in (0, 1))
    assert set(r0) == {"net", "net_ema"}
    for name in r0:
        for k, v in r0[name].items():
            assert torch.equal(r1[name][k], v), (name, k)
    for method in ("source_only", "dann"):  # no BatchNorm, SGD: only rounding differs, ~1e-7 relative
        a, b = (checkpoint(tmp_path / run, f"{method}/checkpoint.pt") for run in ("a1", "a2"))
        for k, v in a["modules"]["net"].items():
            torch.testing.assert_close(b["modules"]["net"][k], v, atol=1e-5, rtol=1e-4)

    # digitnet has dropout: its masks are drawn per rank, so fine-tuning matches one process only in
    # distribution; what DDP guarantees is that the ranks hold the same weights at every step
    transfer = ["transfer", "--dataset", "digits", "--arch", "digitnet", "--weights", "NONE", "--input-transform",
                "digits_as_mnist", "--layers", "relu_fc1", "--finetune-epochs", "1", "--dry-run", "--seed", "1"]
    one = cnnlab(transfer + ["--out", str(tmp_path / "t1")], env)
    two = cnnlab(transfer + ["--out", str(tmp_path / "t2")], with_rank_dumps(env, tmp_path), nproc=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert two.stdout.count("selected relu_fc1") == 1  # the results are printed once, by rank 0
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True)["modules"]["model"] for r in (0, 1))
    for k, v in r0.items():
        assert torch.equal(r1[k], v), k
    c1, c2 = (list(csv.DictReader(open(tmp_path / t / "curves.csv"))) for t in ("t1", "t2"))
    assert [r["method"] for r in c1] == [r["method"] for r in c2]
    for r1_, r2_ in zip(c1, c2):
        assert abs(float(r1_["test_acc"]) - float(r2_["test_acc"])) <= 0.15, (r1_, r2_)


def test_compiled_training_steps_train_like_eager_ones(env, tmp_path):
    """--compile (torch.compile of what a step calls; CUDA graphs on a GPU) on this CPU: the same run
    within float noise, checkpoints with the same keys a plain network loads."""
    argv = GAN + ["--epochs", "1", "--subset", "96"]
    eager = cnnlab(argv + ["--out", str(tmp_path / "eager")], env)
    fast = cnnlab(argv + ["--compile", "--out", str(tmp_path / "compiled")], env)
    if fast.returncode != 0 and "compiler" in fast.stderr.lower():
        pytest.skip("no working C++ compiler for torch.compile here")
    assert eager.returncode == 0 and fast.returncode == 0, fast.stderr
    a, b = checkpoint(tmp_path / "eager"), checkpoint(tmp_path / "compiled")
    assert a["modules"]["G"].keys() == b["modules"]["G"].keys()
    # inductor fuses and reorders float sums: the yardstick is a thread count change (see summation_noise)
    assert mean_abs_diff(a, b) <= 3 * summation_noise(argv, env, tmp_path)
