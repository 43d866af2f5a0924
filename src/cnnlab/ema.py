"""An exponential moving average of a network's weights, shared by Parts C and D.

Part D samples from the averaged generator (Yazıcı et al. 2019; Karras et al. 2018): it smooths out
the last steps' oscillation of the adversarial game. Part C's VADA evaluates the averaged classifier
(Polyak averaging, as Shu et al. 2018 do). BatchNorm's running statistics are averaged like the
weights (they follow the weights, and the averaged network runs in eval mode). The decay is warmed up, min(decay, (1 + t)/(10 + t))
at step t, so the first steps' random weights do not linger in the average.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def ema_copy(G: nn.Module) -> nn.Module:
    """A frozen copy of the network G to hold the average (no gradients, so DDP never wraps it)."""
    avg = copy.deepcopy(G)
    for p in avg.parameters():
        p.requires_grad_(False)
    return avg


def ema_decay(decay: float, step: int) -> float:
    """The decay used after ``step`` completed steps (warm-up: (1 + t)/(10 + t) while that is smaller)."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(avg: nn.Module, G: nn.Module, decay: float) -> None:
    """avg ← decay · avg + (1 − decay) · G, for parameters and floating-point buffers; integer buffers
    (BatchNorm's batch counter) are copied."""
    # one multi-tensor call for every floating-point tensor: the same arithmetic as a lerp_ per tensor,
    # without a dispatch (and an OpenMP region) per tensor, which a small G pays at every step
    pairs = [(a, p.detach()) for a, p in zip(avg.parameters(), G.parameters())]
    pairs += [(a, b) for a, b in zip(avg.buffers(), G.buffers()) if a.dtype.is_floating_point]
    torch._foreach_lerp_([a for a, _ in pairs], [b for _, b in pairs], 1 - decay)
    for a, b in zip(avg.buffers(), G.buffers()):
        if not a.dtype.is_floating_point:
            a.copy_(b)
