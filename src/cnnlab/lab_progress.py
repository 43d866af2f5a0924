"""Overall progress of ``cnnlab lab``: which part, what it is doing, time elapsed and time left.

The parts need no special calls: every step of every part already logs to the ``cnnlab`` logger (a
new run folder, a training epoch, a study), so a logging handler turns those records into progress
lines. Time left comes from each part's expected duration in the chosen mode (measured by
``benchmarks/bench_lab.py`` on a 2-core machine: docs/checks/lab.md), scaled by how fast this machine has been so far.
"""

from __future__ import annotations

import logging
import sys
import time

# Seconds per part on the 2-core reference machine, by mode, on the embedded default (measured by
# benchmarks/bench_lab.py: docs/checks/lab.md).
EXPECTED_SECONDS = {
    "full": {"A": 236.0, "B": 54.0, "C": 255.0, "D": 194.0},
    "quick": {"A": 58.0, "B": 39.0, "C": 45.0, "D": 30.0},
    "dry": {"A": 16.0, "B": 8.0, "C": 15.0, "D": 18.0},
}
# The same for a part that found the course's data under --data-root (docs/checks/lab.md, "With the
# course's data"): --quick and --dry-run measured end to end, the full A and B too; the full C and D from
# their measured seconds per epoch times the epochs they run (4 DANN runs of 20 epochs, 8 GAN runs of 5).
# Part C's VADA + DIRT-T (beyond the course) scaled C by its measured side-by-side share on the embedded
# data (full 1.37×, quick 1.26×): the course-data C values are that share applied, not a new end-to-end run.
COURSE_SECONDS = {
    "full": {"A": 1047.0, "B": 198.0, "C": 6400.0, "D": 2300.0},
    "quick": {"A": 152.0, "B": 72.0, "C": 410.0, "D": 345.0},
    "dry": {"A": 20.0, "B": 9.0, "C": 9.0, "D": 47.0},
}


def expected_seconds(parts, mode: str, course=()) -> dict[str, float]:
    """Each part's expected seconds: from COURSE_SECONDS for the parts in ``course`` (those that use the
    course's data), else from EXPECTED_SECONDS."""
    return {p: (COURSE_SECONDS if p in course else EXPECTED_SECONDS)[mode].get(p, 60.0) for p in parts}


def _minutes(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{round(seconds / 60)} min" if seconds >= 90 else f"{max(10, round(seconds, -1)):.0f} s"


def plan_text(parts, mode: str, course=()) -> str:
    """One line before the lab starts: how long it should take on 2 CPU cores, and what --quick would take."""
    exp = expected_seconds(parts, mode, course)
    each = ", ".join(f"{p} ~{_minutes(s)}" + (" (course data)" if p in course else "") for p, s in exp.items())
    line = f"Expected time on 2 CPU cores: ~{_minutes(sum(exp.values()))} ({each})"
    if mode == "full":
        line += f"; `--quick` takes ~{_minutes(sum(expected_seconds(parts, 'quick', course).values()))}"
    return line + ". A GPU or more cores take less."


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class LabProgress(logging.Handler):
    """Prints ``[lab 42% · Part B 1:10 · <latest step> · 3:05 elapsed · ~4 min left]`` lines, at most
    one every ``every`` seconds (and one at each part's start and end)."""

    def __init__(self, parts: list[str], mode: str, every: float = 10.0, stream=None, course=()):
        super().__init__(level=logging.INFO)
        self.expected = expected_seconds(parts, mode, course)
        self.parts = list(parts)
        self.every = every
        self.stream = stream or sys.stdout
        self.t0 = time.perf_counter()
        self.done: dict[str, float] = {}  # part -> seconds it took
        self.current: str | None = None
        self.part_t0 = self.t0
        self.last_print = 0.0

    # --------------------------------------------------------------- estimates
    def pace(self) -> float:
        """Actual / expected time so far: of the finished parts, and of the current part once it runs
        longer than expected at that pace (so a slow machine shows inside the first part too)."""
        exp = sum(self.expected[p] for p in self.done)
        pace = sum(self.done.values()) / exp if exp else 1.0
        if self.current is not None:
            spent = time.perf_counter() - self.part_t0
            pace = max(pace, (sum(self.done.values()) + spent) / (exp + self.expected[self.current]))
        return pace

    def seconds_left(self) -> float:
        pace = self.pace()
        left = sum(self.expected[p] for p in self.parts if p not in self.done and p != self.current) * pace
        if self.current is not None:
            spent = time.perf_counter() - self.part_t0
            left += max(self.expected[self.current] * pace - spent, 0.1 * self.expected[self.current] * pace)
        return left

    def fraction(self) -> float:
        total = sum(self.expected.values())
        done = sum(self.expected[p] for p in self.done)
        if self.current is not None:
            spent = time.perf_counter() - self.part_t0
            done += min(spent / self.pace(), 0.95 * self.expected[self.current])
        return done / total if total else 1.0

    # --------------------------------------------------------------- events
    def start_part(self, part: str) -> None:
        self.current, self.part_t0 = part, time.perf_counter()
        self._print("starting")

    def end_part(self, part: str, seconds: float) -> None:
        self.done[part] = seconds
        self.current = None
        self._print(f"Part {part} done in {_clock(seconds)}")

    def skip_part(self, part: str) -> None:  # resumed or unavailable: no time left to spend on it
        self.parts = [p for p in self.parts if p != part]
        self.expected.pop(part, None)

    def emit(self, record: logging.LogRecord) -> None:
        if self.current is None or time.perf_counter() - self.last_print < self.every:
            return
        try:
            self._print(record.getMessage())
        except Exception:  # progress must never break the lab
            self.handleError(record)

    def line(self, what: str) -> str:
        now = time.perf_counter()
        where = f"Part {self.current} {_clock(now - self.part_t0)} · " if self.current else ""
        what = what.splitlines()[0] if what else ""
        what = what if len(what) <= 70 else what[:67] + "…"
        left = self.seconds_left()
        left_text = f"~{left / 60:.0f} min left" if left >= 90 else f"~{left:.0f} s left"
        return f"[lab {100 * self.fraction():.0f}% · {where}{what} · {_clock(now - self.t0)} elapsed · {left_text}]"

    def _print(self, what: str) -> None:
        self.last_print = time.perf_counter()
        print(self.line(what), file=self.stream, flush=True)
