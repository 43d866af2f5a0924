"""The gradient reversal layer and the schedules of DANN (Ganin & Lempitsky 2015, §3.2 and §5.1.1).

Forward, the GRL is the identity; backward, it multiplies the incoming gradient by −λ, so the feature
extractor *maximises* the domain loss that the domain head minimises. λ grows from 0 to ~1 with the
training progress p ∈ [0, 1]:  λ(p) = 2 / (1 + exp(−γ·p)) − 1  (paper γ = 10, course γ = 2, per batch).
The learning rate decays as  μ(p) = μ0 / (1 + α·p)^β  with α = 10, β = 0.75 (paper: p per step;
course: p = epoch/epochs, per epoch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cnnlab.errors import CnnlabError


class GradientReversal(torch.autograd.Function):
    """y = x forward; dL/dx = −λ · dL/dy backward (no gradient for λ)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = float(lambda_)
        return x.view_as(x)  # a new node, so backward is called even though the values are unchanged

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output.neg() * ctx.lambda_, None


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    return GradientReversal.apply(x, lambda_)


# --------------------------------------------------------------------------- λ schedules
LAMBDA_SCHEDULES = ("course", "paper", "constant", "none")


def dann_lambda(p: float, gamma: float) -> float:
    """2/(1+e^(−γp)) − 1: 0 at p = 0, tanh(γ/2) at p = 1 (0.762 for γ = 2, 0.9999 for γ = 10)."""
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


@dataclass(frozen=True)
class LambdaSchedule:
    """The GRL factor as a function of the training progress p ∈ [0, 1].

    ``course``: γ = 2; ``paper``: γ = 10; ``constant``: ``value`` from the first step; ``none``: no
    reversal at all (C-Q1: the domain head's gradient reaches the features unreversed).
    """

    kind: str = "course"
    gamma: float | None = None  # overrides the kind's γ (course 2, paper 10)
    value: float = 1.0  # for "constant"

    def __post_init__(self):
        if self.kind not in LAMBDA_SCHEDULES:
            raise CnnlabError(f"--lambda-schedule {self.kind!r}: choose one of {', '.join(LAMBDA_SCHEDULES)}")

    @property
    def reverses(self) -> bool:
        return self.kind != "none"

    @property
    def gamma_value(self) -> float:
        return self.gamma if self.gamma is not None else (10.0 if self.kind == "paper" else 2.0)

    def __call__(self, p: float) -> float:
        if self.kind == "none":
            return 0.0  # unused: no GRL in the graph
        if self.kind == "constant":
            return float(self.value)
        return dann_lambda(min(max(p, 0.0), 1.0), self.gamma_value)

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "no GRL"
        if self.kind == "constant":
            return f"λ = {self.value:g} constant"
        return f"γ = {self.gamma_value:g} ({self.kind})"


# --------------------------------------------------------------------------- learning-rate schedules
LR_SCHEDULES = ("course", "paper", "constant")


@dataclass(frozen=True)
class LRSchedule:
    """μ0 / (1 + α·p)^β. ``course``: p = epoch/epochs (constant within an epoch); ``paper``: p = step/steps."""

    kind: str = "course"
    lr0: float = 0.01
    alpha: float = 10.0
    beta: float = 0.75

    def __post_init__(self):
        if self.kind not in LR_SCHEDULES:
            raise CnnlabError(f"--lr-schedule {self.kind!r}: choose one of {', '.join(LR_SCHEDULES)}")
        if not (self.lr0 > 0 and math.isfinite(self.lr0)):
            raise CnnlabError(f"--lr {self.lr0}: the learning rate must be a positive number")

    def progress(self, *, epoch: int, epochs: int, step: int, steps: int) -> float:
        """p for this schedule: ``epoch`` and ``step`` are 0-based counts of completed epochs/steps."""
        if self.kind == "course":
            return epoch / max(epochs, 1)
        return step / max(steps, 1)

    def __call__(self, p: float) -> float:
        if self.kind == "constant":
            return self.lr0
        return self.lr0 / (1.0 + self.alpha * p) ** self.beta
