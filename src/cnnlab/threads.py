"""How many intra-op threads to use, on an idle or a shared CPU, and what the run folder records about it.

PyTorch starts one OpenMP thread per core. When another CPU-bound process shares the cores, every
parallel region waits at its barrier for a thread that the scheduler has paused, and the OpenMP
threads that arrive first spin while they wait, taking the CPU from the very thread they wait for:
one competing process made a GAN epoch 46× slower on 2 cores. So cnnlab

* asks OpenMP to sleep rather than spin while it waits (``OMP_WAIT_POLICY=PASSIVE``), set before
  torch is imported, unless the user set a policy;
* uses as many threads as there are cores that other processes leave idle (measured over a short
  window from /proc/stat), unless the user set ``OMP_NUM_THREADS`` or ``--threads``;
* checks again between epochs (``retune``), since other jobs come and go during a long run.

benchmarks/bench_busy_cpu.py measures the effect (docs/checks/lab.md).
"""

from __future__ import annotations

import os
import platform
import time

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_state = {"auto": False, "last": None}


def set_wait_policy() -> None:
    """Before torch is imported: OpenMP threads sleep while they wait (no effect once OpenMP started)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _cpu_ticks() -> tuple[float, float] | None:
    """(busy ticks of the whole machine, busy ticks of this process) so far, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, float(own[11]) + float(own[12])  # utime + stime of this process


def busy_elsewhere(window: float = 0.2) -> float | None:
    """Cores kept busy by other processes, averaged over ``window`` seconds (None off Linux)."""
    a = _cpu_ticks()
    if a is None:
        return None
    time.sleep(window)
    b = _cpu_ticks()
    return max(0.0, ((b[0] - a[0]) - (b[1] - a[1])) / _CLK / window)


def _since(last) -> float | None:
    now = _cpu_ticks()
    if now is None or last is None:
        return None
    seconds = time.monotonic() - last[2]
    return max(0.0, ((now[0] - last[0]) - (now[1] - last[1])) / _CLK / seconds) if seconds > 0.5 else None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_for(busy: float | None, n_cores: int) -> int:
    """One thread per core that other processes leave free (at least one); all cores when unknown.
    A core counts as taken when another process uses more than 0.5 of it."""
    if busy is None:
        return n_cores
    return max(1, min(n_cores, n_cores - int(busy + 0.5)))


def choose(threads: int | None = None) -> str:
    """Set torch's intra-op thread count: ``threads`` when given, else what OMP_NUM_THREADS says, else
    one per free core. Returns how it was chosen (for the log and config.json)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        return f"{threads} (--threads)"
    if os.environ.get("OMP_NUM_THREADS"):
        return f"{torch.get_num_threads()} (OMP_NUM_THREADS)"
    if torch.get_num_threads() != cores():  # this process chose already (a notebook, a test): keep it
        return f"{torch.get_num_threads()} (set before)"
    busy = busy_elsewhere()
    n = threads_for(busy, cores())
    torch.set_num_threads(n)
    _state["auto"], _state["last"] = True, _mark()
    return f"{n} of {cores()} cores" + (f" ({busy:.1f} busy with other processes)" if busy else "")


def _mark():
    t = _cpu_ticks()
    return None if t is None else (t[0], t[1], time.monotonic())


def stop_following() -> None:
    """The command is over: later calls (a notebook, tests) keep whatever thread count they set."""
    _state["auto"] = False


def retune() -> int | None:
    """Between epochs: follow other processes that started or stopped since the last check (only when
    the thread count was chosen automatically). Returns the new count when it changed."""
    import torch

    if not _state["auto"]:
        return None
    busy = _since(_state["last"])
    _state["last"] = _mark()
    n = threads_for(busy, cores())
    if busy is None or n == torch.get_num_threads():
        return None
    torch.set_num_threads(n)
    return n


def machine() -> dict:
    """What config.json records about the CPU and threads (they change the numbers: README)."""
    import torch

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": cores(), "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")}
