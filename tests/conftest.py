"""Test setup: offline, deterministic, caches in a temporary folder, progress bars off."""

import os

import pytest
import torch

os.environ["CNNLAB_PROGRESS"] = "0"
# A fixed thread count: cnnlab would otherwise pick one per idle core at each command (cnnlab/threads.py),
# and a test that compares two runs bit for bit needs the same count in both.
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ["CNNLAB_CACHE"] = str(tmp_path_factory.mktemp("cnnlab-cache"))
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP spin-waits crawl on a shared, busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def interrupt_at(monkeypatch):
    """``interrupt_at(module, "name", n)``: the n-th call of ``module.name`` raises KeyboardInterrupt (what
    Ctrl-C raises mid-run); returns a function that puts the real one back, for the resumed run."""
    def patch(module, name: str, n: int):
        real, calls = getattr(module, name), [0]

        def interrupting(*a, **k):
            calls[0] += 1
            if calls[0] == n:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(module, name, interrupting)
        return lambda: monkeypatch.setattr(module, name, real)
    return patch
