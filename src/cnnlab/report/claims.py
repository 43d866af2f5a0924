"""Sentences that compare: decided by the numbers and a stated threshold, never written in advance.

A report sentence such as "DANN beats source-only" or "the gap shrinks" is a claim. Each comes from
a :class:`Comparison`, which holds the two numbers, the margin a difference must exceed to count,
and where that margin comes from. Inside the margin the report says "no clear difference".

* Accuracies measured on test sets: the margin is the half-width of the 95% normal-approximation
  confidence interval of the difference of two independent proportions,
  1.96 · sqrt(a(1−a)/n_a + b(1−b)/n_b). (Two models scored on the same images are positively
  correlated, so this margin is conservative: it says "no clear difference" a little too often,
  never "better" too often.)
* Quantities with no sampling model at hand (a Fréchet distance, a loss): a relative margin that
  the caller states, e.g. 10%, or a seed-to-seed spread measured in the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.96
SAME = "no clear difference"


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: +1 when a − b exceeds ``margin``, −1 when b − a does, 0 otherwise."""

    a: float
    b: float
    margin: float
    basis: str  # how the margin was set, for the report ("95% CI of the difference, n = 1,000 and 1,000")

    @property
    def sign(self) -> int:
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            return 0
        d = self.a - self.b
        return 1 if d > self.margin else -1 if -d > self.margin else 0

    def says(self, higher: str, lower: str, same: str = SAME) -> str:
        """The words for this outcome: ``higher`` when a > b beyond the margin, ``lower`` when a < b."""
        return {1: higher, -1: lower, 0: same}[self.sign]

    @property
    def threshold(self) -> str:
        """The rule, for the report: "±1.9 points, the 95% CI of the difference (n = 1,000 each)"."""
        return f"±{self.margin * 100:.1f} points, {self.basis}" if self.basis.startswith("95%") else \
            f"±{self.margin:.3g}, {self.basis}"


def accuracy_margin(a: float, b: float, n_a: int, n_b: int | None = None) -> float:
    """95% CI half-width of the difference of two accuracies measured on ``n_a`` and ``n_b`` images."""
    n_b = n_a if n_b is None else n_b
    if n_a < 1 or n_b < 1 or not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return Z95 * math.sqrt(a * (1 - a) / n_a + b * (1 - b) / n_b)


def compare_accuracies(a: float | None, b: float | None, n_a: int, n_b: int | None = None) -> Comparison:
    """Accuracy ``a`` against ``b`` (fractions), measured on ``n_a`` and ``n_b`` test images."""
    a = math.nan if a is None else float(a)
    b = math.nan if b is None else float(b)
    n_b = n_a if n_b is None else n_b
    sizes = f"n = {n_a:,}" + (" each" if n_a == n_b else f" and {n_b:,}")
    return Comparison(a, b, accuracy_margin(a, b, n_a, n_b), f"95% CI of the difference, {sizes}")


def compare_relative(a: float | None, b: float | None, rel: float, what: str = "") -> Comparison:
    """``a`` against ``b`` with a margin of ``rel`` × the larger magnitude (for a quantity without a
    sampling model, e.g. a Fréchet distance of one run)."""
    a = math.nan if a is None else float(a)
    b = math.nan if b is None else float(b)
    scale = max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else math.inf
    basis = f"{rel:.0%} of the larger value" + (f" ({what})" if what else "")
    return Comparison(a, b, rel * scale, basis)


def compare_seed_means(a: list[float], b: list[float], what: str = "") -> Comparison:
    """The mean of ``a`` against the mean of ``b``, each a value per training seed (≥ 2 each): the margin
    is 1.96 × the standard error of the difference of the means, sqrt(s_a²/n_a + s_b²/n_b)."""
    import statistics

    a = [float(v) for v in a if v is not None and math.isfinite(float(v))]
    b = [float(v) for v in b if v is not None and math.isfinite(float(v))]
    if len(a) < 2 or len(b) < 2:
        return Comparison(math.nan, math.nan, math.inf, "fewer than 2 seeds")
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    basis = f"1.96 × the standard error of the difference of the seed means ({len(a)} and {len(b)} seeds)"
    return Comparison(statistics.fmean(a), statistics.fmean(b), Z95 * se, basis + (f", {what}" if what else ""))
