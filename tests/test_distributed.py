"""Two CPU processes (gloo on loopback) train like one process."""

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from cnnlab import distributed
from cnnlab.train import train_classifier


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (96, 1, 8, 8), generator=g, dtype=torch.uint8)
    return x, (x.float().mean((1, 2, 3)) > 127).long()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))


def _pre(x):
    return x.float() / 255


def _worker(rank, world, port, out, epochs=3, ckpt=None, resume=False):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        x, y = _data()
        m = _model()
        st = train_classifier(m, x, y, preprocess=_pre, epochs=epochs, batch_size=16, seed=5, lr=1e-2,
                              checkpoint=ckpt, resume=resume)
        if rank == 0 and out:
            torch.save({"state": m.state_dict(), "history": st.history}, out)
        # every rank reaches here before any tears gloo down: one CI run saw a rank abort at exit
        # ("terminate called without an active exception") when rank 0 destroyed the group first
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    x, y = _data()
    single = _model()
    st = train_classifier(single, x, y, preprocess=_pre, epochs=3, batch_size=16, seed=5, lr=1e-2)
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    # Each rank averages the gradients of its half of the same global batch: mathematically the
    # one-process gradient. Only float summation order differs (≈1e-7 relative per step), which Adam
    # can amplify slightly over 18 steps: 1e-4 absolute is far below any real divergence (a wrong
    # shard or a missing all-reduce moves weights by >1e-2 here).
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp["state"][k], v, atol=1e-4, rtol=1e-4)
    assert abs(ddp["history"][-1]["train_acc"] - st.history[-1]["train_acc"]) < 1e-6


def test_single_process_helpers_are_no_ops():
    idx = torch.arange(10)
    assert torch.equal(distributed.shard(idx), idx)
    assert distributed.all_reduce_mean({"a": 1.5}) == {"a": 1.5}
    assert distributed.is_main() and distributed.world_size() == 1


TRANSFER_ARGV = ["transfer", "--dataset", "digits", "--arch", "digitnet", "--weights", "NONE",
                 "--input-transform", "digits_as_mnist", "--layers", "relu_fc1,conv", "--scratch-epochs", "1",
                 "--dry-run", "--seed", "3"]


def _transfer_worker(rank, world, port, cache, out, record):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      CNNLAB_CACHE=cache, CNNLAB_PROGRESS="0")
    torch.set_num_threads(1)
    from cnnlab import cli
    from cnnlab.transfer import features, study

    features.CHUNK_IMAGES = 8  # many small chunks, so that both ranks get some
    saved, svm_calls = [], []
    real_save, real_svm = features._save_atomic, study.svm_study
    features._save_atomic = lambda path, a: (saved.append(path.name), real_save(path, a))[1]
    study.svm_study = lambda *a, **k: (svm_calls.append(1), real_svm(*a, **k))[1]
    try:
        rc = cli.main(TRANSFER_ARGV + ["--out", out])
        with open(f"{record}.{rank}", "w") as f:
            f.write(f"{rc} {len([n for n in saved if n.endswith('.labels.npy') and n[0].isdigit()])} {len(svm_calls)}")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_extraction_shares_chunks_writes_one_cache_and_runs_the_svm_once(tmp_path, monkeypatch):
    import json

    from cnnlab import cli

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache1"))
    monkeypatch.setenv("CNNLAB_PROGRESS", "0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker: oneDNN's float sums depend on the thread count
    try:
        assert cli.main(TRANSFER_ARGV + ["--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    record = str(tmp_path / "record")
    mp.spawn(_transfer_worker, args=(2, _free_port(), str(tmp_path / "cache2"), str(tmp_path / "two"), record),
             nprocs=2, join=True)
    (rc0, chunks0, svm0), (rc1, chunks1, svm1) = [map(int, open(f"{record}.{r}").read().split()) for r in (0, 1)]
    assert rc0 == rc1 == 0
    # every rank extracted its share (rank 0 takes the odd chunk out of each of the 4 extractions)
    assert chunks1 > 0 and 0 <= chunks0 - chunks1 <= 4
    assert svm0 >= 1 and svm1 == 0  # the SVM sweep ran on rank 0 only
    # one cache, complete, no parts left; a single process reads it without extracting again
    cache2 = tmp_path / "cache2" / "features"
    assert not [p for p in cache2.iterdir() if p.is_dir()]
    assert sorted(p.name for p in cache2.glob("*.npy")) == sorted(p.name for p in (tmp_path / "cache1" / "features").glob("*.npy"))
    for f in cache2.glob("*.npy"):
        np.testing.assert_array_equal(np.load(f), np.load(tmp_path / "cache1" / "features" / f.name))
    # the same batches went through the same network: the SVM results are identical, not just close
    one, two = (json.loads((tmp_path / d / "metrics.json").read_text())["transfer"] for d in ("one", "two"))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(one["svm_rows"]) == strip(two["svm_rows"])
    assert one["selected"] == two["selected"]
    assert not (tmp_path / "two").joinpath("rank1").exists()


@pytest.mark.slow
def test_checkpoints_resume_under_another_world_size(tmp_path):
    x, y = _data()
    reference = _model()
    train_classifier(reference, x, y, preprocess=_pre, epochs=4, batch_size=16, seed=5, lr=1e-2)
    # 2 processes for 2 epochs, then 1 process to epoch 3, then 2 processes again to epoch 4
    ckpt = str(tmp_path / "last.pt")
    mp.spawn(_worker, args=(2, _free_port(), "", 2, ckpt, False), nprocs=2, join=True)
    m = _model()
    train_classifier(m, x, y, preprocess=_pre, epochs=3, batch_size=16, seed=5, lr=1e-2, checkpoint=ckpt, resume=True)
    out = str(tmp_path / "final.pt")
    mp.spawn(_worker, args=(2, _free_port(), out, 4, ckpt, True), nprocs=2, join=True)
    # the checkpoint holds the global batch order (generator state) and the optimiser state, which do
    # not depend on the world size; the tolerance is the float-summation one of the test above
    final = torch.load(out, weights_only=True)["state"]
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(final[k], v, atol=1e-4, rtol=1e-4)


def _syncbn_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    distributed.init_from_env()
    try:
        torch.manual_seed(0)
        x = torch.randn(8, 3, 5, 5, dtype=torch.float64)
        bn = distributed.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3, momentum=0.3).double()))
        mine = x[rank::world].clone().requires_grad_(True)
        w = torch.arange(1.0, 9.0, dtype=torch.float64)[rank::world].view(-1, 1, 1, 1)  # a non-uniform loss
        (bn(mine) * w).sum().backward()
        torch.save({"grad": mine.grad, "mean": bn[0].running_mean,
                    "var": bn[0].running_var, "wgrad": bn[0].weight.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sync_batchnorm_on_cpu_equals_batchnorm_on_the_whole_batch(tmp_path):
    """Two ranks holding half a batch each: the same running statistics, input gradients and weight
    gradients (summed over ranks, as DDP would average them) as one BatchNorm on the whole batch."""
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    bn = nn.BatchNorm2d(3, momentum=0.3).double()
    w = torch.arange(1.0, 9.0, dtype=torch.float64).view(-1, 1, 1, 1)
    (bn(x) * w).sum().backward()
    out = str(tmp_path / "sbn")
    mp.spawn(_syncbn_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    r = [torch.load(f"{out}.{k}", weights_only=True) for k in (0, 1)]
    for k in (0, 1):
        torch.testing.assert_close(r[k]["mean"], bn.running_mean)
        torch.testing.assert_close(r[k]["var"], bn.running_var)  # unbiased over the 8 × 25 values of each channel
        torch.testing.assert_close(r[k]["grad"], x.grad[k::2])  # gradients flow through the other rank's statistics
    torch.testing.assert_close(r[0]["wgrad"] + r[1]["wgrad"], bn.weight.grad)


def test_shards_are_equal_and_batch_sizes_must_split(monkeypatch):
    from cnnlab.errors import CnnlabError

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.shard(torch.arange(9)).tolist() == [1, 4, 7]
    assert distributed.shard(torch.arange(11)).tolist() == [1, 4, 7]  # 11 → 9: every rank gets 3
    with pytest.raises(CnnlabError, match="--batch-size 64 cannot be split into equal shards for 3 processes"):
        distributed.check_batch_size(64)
    distributed.check_batch_size(63)
