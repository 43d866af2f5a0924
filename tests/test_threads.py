"""Intra-op threads on an idle or a shared CPU, and what config.json records about the machine."""

import json

import pytest
import torch

from cnnlab import threads


@pytest.mark.parametrize("busy, cores, expected", [
    (None, 2, 2),  # unknown (not Linux): all cores
    (0.0, 2, 2), (0.3, 2, 2),  # a little background work does not take a core
    (0.9, 2, 1), (1.0, 2, 1), (3.0, 2, 1),  # one competing process: one thread; never fewer than one
    (1.0, 8, 7), (2.6, 8, 5),
])
def test_one_thread_per_core_that_other_processes_leave_free(busy, cores, expected):
    assert threads.threads_for(busy, cores) == expected


def test_user_choices_win_over_the_automatic_one(monkeypatch):
    n = torch.get_num_threads()
    try:
        assert threads.choose(1) == "1 (--threads)" and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert threads.choose(None).endswith("(OMP_NUM_THREADS)")
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(threads, "cores", lambda: 2)
        assert threads.choose(None) == "1 (set before)"  # this process chose already: kept
        torch.set_num_threads(2)
        monkeypatch.setattr(threads, "busy_elsewhere", lambda window=0.2: 1.0)
        assert threads.choose(None).startswith("1 of 2 cores") and torch.get_num_threads() == 1
    finally:
        threads.stop_following()
        torch.set_num_threads(n)


def test_retune_follows_a_change_of_load_only_when_chosen_automatically(monkeypatch):
    n = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # conftest pins it; here the choice is automatic
    try:
        monkeypatch.setattr(threads, "cores", lambda: 2)
        monkeypatch.setattr(threads, "busy_elsewhere", lambda window=0.2: 0.0)
        torch.set_num_threads(2)
        threads.choose(None)
        monkeypatch.setattr(threads, "_since", lambda last: 1.0)  # a competitor appeared
        assert threads.retune() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "_since", lambda last: 0.0)  # and left
        assert threads.retune() == 2
        threads.stop_following()
        monkeypatch.setattr(threads, "_since", lambda last: 1.0)
        assert threads.retune() is None and torch.get_num_threads() == 2
    finally:
        threads.stop_following()
        torch.set_num_threads(n)


def test_busy_elsewhere_measures_another_process(tmp_path):
    import subprocess
    import sys

    if threads.busy_elsewhere(0.05) is None:
        pytest.skip("no /proc/stat here")
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert threads.busy_elsewhere(0.5) > 0.6  # one core kept busy by the other process
    finally:
        hog.kill()
        hog.wait()


def test_config_records_the_cpu_and_the_threads(tmp_path):
    from cnnlab.runs import Run

    with Run.create(tmp_path / "r", "test", {}, seed=0):
        pass
    machine = json.loads((tmp_path / "r" / "config.json").read_text())["machine"]
    assert machine["threads"] == torch.get_num_threads() and machine["cores"] >= 1
    assert set(machine) == {"cpu", "cores", "threads", "omp_wait_policy", "omp_num_threads"}


def test_threads_must_be_positive(capsys):
    from cnnlab.cli import main

    assert main(["gan", "train", "--threads", "0", "--dry-run"]) == 2
    assert "--threads 0: give a positive number of threads" in capsys.readouterr().err
