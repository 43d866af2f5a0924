"""GRL and schedules: analytic oracles."""

import math

import pytest
import torch

from cnnlab.adapt.grl import GradientReversal, LambdaSchedule, LRSchedule, dann_lambda, grad_reverse
from cnnlab.errors import CnnlabError


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 2.5])
def test_grl_forward_identity_backward_minus_lambda(lam):
    x = torch.randn(4, 7, requires_grad=True)
    y = grad_reverse(x, lam)
    assert torch.equal(y, x)
    g = torch.randn(4, 7)
    y.backward(g)
    assert torch.allclose(x.grad, -lam * g)


def test_grl_inside_a_graph_reverses_only_what_passes_through_it():
    w = torch.tensor(3.0, requires_grad=True)
    f = w * 2.0  # d f / d w = 2
    loss = (f ** 2) + GradientReversal.apply(f, 0.5) * 4.0  # 2f·2 from the first term, −0.5·4·2 from the second
    loss.backward()
    assert w.grad.item() == pytest.approx(2 * 6.0 * 2 - 0.5 * 4 * 2)


def test_lambda_schedules_at_p0_and_p1():
    assert dann_lambda(0.0, 2) == 0.0 and dann_lambda(0.0, 10) == 0.0
    assert dann_lambda(1.0, 2) == pytest.approx(math.tanh(1.0))  # 0.7616: the course's λ at the end
    assert dann_lambda(1.0, 10) == pytest.approx(math.tanh(5.0))  # 0.9999: the paper's
    assert LambdaSchedule("course")(1.0) == pytest.approx(0.76159, abs=1e-5)
    assert LambdaSchedule("paper")(0.0) == 0.0 and LambdaSchedule("paper")(1.0) > 0.9999
    assert LambdaSchedule("constant", value=1.0)(0.0) == 1.0 == LambdaSchedule("constant")(1.0)
    assert not LambdaSchedule("none").reverses and LambdaSchedule("course").reverses
    assert LambdaSchedule("course", gamma=10)(0.3) == LambdaSchedule("paper")(0.3)
    # monotone between the ends
    vals = [LambdaSchedule("course")(p / 10) for p in range(11)]
    assert vals == sorted(vals)


def test_lr_schedules_at_p0_and_p1_and_their_progress():
    course, paper = LRSchedule("course"), LRSchedule("paper")
    assert course(0.0) == 0.01 and paper(0.0) == 0.01
    assert course(1.0) == pytest.approx(0.01 / 11 ** 0.75)  # 0.001659
    # course: p = epoch/epochs, constant inside an epoch; paper: p = step/steps
    assert course.progress(epoch=3, epochs=20, step=999, steps=2000) == pytest.approx(0.15)
    assert paper.progress(epoch=3, epochs=20, step=500, steps=2000) == pytest.approx(0.25)
    assert LRSchedule("constant", 0.02)(0.7) == 0.02


def test_bad_schedule_names_are_clear_errors():
    with pytest.raises(CnnlabError, match="lambda-schedule"):
        LambdaSchedule("cosine")
    with pytest.raises(CnnlabError, match="lr-schedule"):
        LRSchedule("step")
    with pytest.raises(CnnlabError, match="positive"):
        LRSchedule("course", lr0=-1)
