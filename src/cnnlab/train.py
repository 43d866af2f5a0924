"""The one training loop, shared by every part.

:func:`fit` runs epochs of a caller-given ``step`` function (a classifier step, a DANN step, a GAN
step...) and owns everything around it: progress, per-epoch history, evaluation, atomic per-epoch
checkpoints with every RNG state (so ``resume`` continues bit-exactly on CPU), and a clean stop when
a loss becomes NaN/inf (the last good checkpoint stays on disk).

:func:`train_classifier` is the common supervised case built on it (Part A scratch/fine-tuning,
the digit networks of parts B and D).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab import distributed, threads
from cnnlab.errors import TrainingDiverged
from cnnlab.progress import progress_bar
from cnnlab.runs import save_torch

log = logging.getLogger("cnnlab")


@dataclass
class TrainState:
    """Everything a checkpoint must hold to continue exactly where training stopped."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    generator: torch.Generator = field(default_factory=torch.Generator)  # shuffling / noise for this run
    epoch: int = 0  # epochs completed
    step: int = 0  # optimisation steps completed
    history: list[dict] = field(default_factory=list)  # one row per epoch
    step_log: list[dict] = field(default_factory=list)  # one row per step, when fit(log_steps=True)
    extra: dict = field(default_factory=dict)  # tensors/numbers a part wants to keep (e.g. fixed GAN noise)
    calls: dict[str, str] = field(default_factory=dict)  # module -> the method a step calls, when not forward
    find_unused: bool = False  # some trainable parameters get no gradient in a step (DDP must look for them)
    compile: bool = False  # torch.compile what a step calls (--compile; CUDA graphs on a GPU)
    nets: dict[str, Any] = field(default_factory=dict, repr=False)  # set by fit: what a step calls (DDP under torchrun)

    def train(self) -> None:
        for m in self.modules.values():
            m.train()

    def eval(self) -> None:
        for m in self.modules.values():
            m.eval()

    # -- checkpoints
    def state_dict(self) -> dict:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "generator": self.generator.get_state(),
            "epoch": self.epoch, "step": self.step,
            "history": self.history, "step_log": self.step_log, "extra": self.extra,
            "rng": capture_rng(),
        }

    def load_state_dict(self, sd: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(sd["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(sd["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(sd["schedulers"][k])
        self.generator.set_state(sd["generator"])
        self.epoch, self.step = int(sd["epoch"]), int(sd["step"])
        self.history, self.step_log, self.extra = list(sd["history"]), list(sd["step_log"]), dict(sd["extra"])
        restore_rng(sd["rng"])

    def save(self, path: str | Path) -> Path:
        return save_torch(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def capture_rng() -> dict:
    """Every global RNG state, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    out = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_gauss": random.getstate()[2],
           "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_finite(losses: dict[str, float], state: TrainState, ckpt: Path | None, step: int) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        where = f"epoch {state.epoch + 1}, step {step}"
        kept = f"the last good checkpoint is kept at {ckpt}" if ckpt and ckpt.exists() else "no checkpoint was written yet"
        raise TrainingDiverged(f"training diverged at {where}: {', '.join(f'{k}={v}' for k, v in bad.items())}; "
                               f"{kept}. Lower the learning rate or check the inputs")


# Steps may return 0-d tensors: their values are read every SYNC_EVERY steps (one host synchronisation
# for many steps on a GPU) and checked for NaN/inf then, step by step.
SYNC_EVERY = 20


def fit(state: TrainState, *, epochs: int, batches: Callable[[TrainState], Iterable],
        step: Callable[[TrainState, Any], dict[str, float]],
        evaluate: Callable[[TrainState], dict[str, float]] | None = None,
        checkpoint: str | Path | None = None, resume: bool = False, log_steps: bool = False,
        on_epoch_end: Callable[[TrainState, dict], None] | None = None,
        max_abs_loss: float = 1e6, desc: str = "train") -> TrainState:
    """Train ``state`` for ``epochs`` epochs in total (resumed epochs count).

    ``batches(state)`` yields the epoch's batches; ``step(state, batch)`` does one optimisation step
    through ``state.nets`` (the networks as DDP wraps them under torchrun) and returns its
    losses/metrics as floats; ``evaluate(state)`` (optional) returns end-of-epoch
    metrics. The epoch row (mean of step values + evaluation + seconds) goes to ``state.history``.
    A checkpoint is written atomically after each epoch; ``resume`` continues from it.
    """
    ckpt = Path(checkpoint) if checkpoint else None
    if resume and ckpt is not None and ckpt.exists():
        state.load(ckpt)
        log.info("resumed from %s at epoch %d (step %d)", ckpt, state.epoch, state.step)
    # What a step calls: the modules themselves, or under torchrun their DDP wrappers (rank 0's weights
    # broadcast once, gradients averaged during backward, BatchNorm synchronised).
    state.nets = {k: distributed.wrap(m, state.calls.get(k), find_unused=state.find_unused)
                  for k, m in state.modules.items()}
    if state.compile:
        state.nets = {k: compiled(net, state.modules[k]) for k, net in state.nets.items()}
    try:
        _epochs(state, _Loop(epochs, batches, step, evaluate, ckpt, log_steps, on_epoch_end, max_abs_loss, desc))
    finally:
        state.nets = {}
    state.eval()
    return state


def compiled(net, module: nn.Module):
    """``torch.compile`` of what a step calls: with CUDA graphs (mode "reduce-overhead") on a GPU, where
    the course's small networks are bound by kernel launches, inductor's default mode on a CPU."""
    on_gpu = next(module.parameters()).device.type == "cuda"
    return torch.compile(net, mode="reduce-overhead" if on_gpu else None)


def _read_values(rows: list[dict], keys: list[str]) -> list[list[float]]:
    """Step values as floats: numbers as they are, 0-d tensors (possibly on a GPU) with one copy to the host."""
    out = [[r[k] for k in keys] for r in rows]
    where = [(i, j) for i, row in enumerate(out) for j, v in enumerate(row) if torch.is_tensor(v)]
    if where:
        host = torch.stack([out[i][j].detach().reshape(()).float() for i, j in where]).cpu().tolist()
        for (i, j), v in zip(where, host):
            out[i][j] = v
    return [[float(v) for v in row] for row in out]


@dataclass(frozen=True)
class _Loop:
    """What ``fit`` was asked to run (see its arguments)."""

    epochs: int
    batches: Callable[[TrainState], Iterable]
    step: Callable[[TrainState, Any], dict[str, float]]
    evaluate: Callable[[TrainState], dict[str, float]] | None
    ckpt: Path | None
    log_steps: bool
    on_epoch_end: Callable[[TrainState, dict], None] | None
    max_abs_loss: float
    desc: str


def _epochs(state: TrainState, loop: _Loop) -> None:
    epochs, batches, step, evaluate, ckpt = loop.epochs, loop.batches, loop.step, loop.evaluate, loop.ckpt
    log_steps, on_epoch_end, max_abs_loss, desc = loop.log_steps, loop.on_epoch_end, loop.max_abs_loss, loop.desc
    while state.epoch < epochs:
        t0 = time.perf_counter()
        distributed.seed_ranks_apart(state.generator)
        state.train()
        sums: dict[str, float] = {}
        n = 0
        pending: list[dict] = []  # this epoch's step values not read yet (tensors stay on the device)

        def read_pending() -> None:
            keys = list(pending[0])
            values = _read_values(pending, keys)
            first = state.step - len(pending) + 1
            for i, row in enumerate(values):
                losses = dict(zip(keys, row))
                _check_finite({k: v if abs(v) <= max_abs_loss else math.inf for k, v in losses.items()}, state, ckpt,
                              first + i)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                if log_steps:
                    state.step_log.append({"epoch": state.epoch + 1, "step": first + i, **losses})
            pending.clear()

        bar = progress_bar(batches(state), desc=f"{desc} {state.epoch + 1}/{epochs}")
        for batch in bar:
            pending.append(step(state, batch))
            state.step += 1
            n += 1
            if n % SYNC_EVERY == 0:
                read_pending()
                bar.set_postfix({k: f"{v / n:.3g}" for k, v in list(sums.items())[:3]})
        if pending:
            read_pending()
        for sch in state.schedulers.values():
            sch.step()
        row = {"epoch": state.epoch + 1, **distributed.all_reduce_mean({k: v / max(n, 1) for k, v in sums.items()})}
        if evaluate is not None:
            state.eval()
            with torch.no_grad():
                row.update(evaluate(state))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        state.epoch += 1
        state.history.append(row)
        log.info("%s epoch %d/%d: %s", desc, state.epoch, epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
        if on_epoch_end is not None:
            on_epoch_end(state, row)
        if ckpt is not None and distributed.is_main():
            state.save(ckpt)
        distributed.barrier()
        if (n_threads := threads.retune()) is not None:  # another process started or stopped meanwhile
            log.info("%s: now %d intra-op threads (other processes' load changed)", desc, n_threads)


# --------------------------------------------------------------------------- the supervised case
@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, preprocess: Callable[[torch.Tensor], torch.Tensor],
            batch_size: int = 256) -> torch.Tensor:
    """Logits for uint8 ``images`` (N×C×H×W), batched, in eval mode."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = [model(preprocess(images[s:s + batch_size].to(dev))).float().cpu() for s in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, preprocess, batch_size: int = 256) -> float:
    if len(images) == 0:
        return float("nan")
    return (predict(model, images, preprocess, batch_size).argmax(1) == labels).float().mean().item()


def train_classifier(model: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor, *,
                     preprocess: Callable[[torch.Tensor], torch.Tensor], epochs: int, lr: float = 1e-3,
                     batch_size: int = 64, weight_decay: float = 0.0, optimizer: str = "adam",
                     params: Iterable[nn.Parameter] | None = None, seed: int = 0,
                     test_images: torch.Tensor | None = None, test_labels: torch.Tensor | None = None,
                     checkpoint: str | Path | None = None, resume: bool = False,
                     augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                     train_mode: Callable[[nn.Module], None] | None = None,
                     desc: str = "train") -> TrainState:
    """Cross-entropy training on in-memory uint8 tensors. History rows hold train loss/accuracy and,
    when test tensors are given, test accuracy per epoch (for train/test curves)."""
    from cnnlab.data.transforms import gather_batches, held_on, index_batches

    dev = next(model.parameters()).device
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=lr, weight_decay=weight_decay))
    g = torch.Generator()
    g.manual_seed(seed)
    state = TrainState({"model": model}, {"opt": opt}, generator=g)

    images_held, labels_held = held_on(dev, train_images, train_labels)

    def batches(st: TrainState):
        yield from gather_batches(index_batches(len(images_held), batch_size, generator=st.generator),
                                  images_held, labels_held)

    def step(st: TrainState, batch):
        if train_mode is not None:
            train_mode(model)  # e.g. keep frozen BatchNorm layers in eval mode
        x, y = batch
        if augment is not None:
            x = augment(x, st.generator)
        logits = st.nets["model"](preprocess(x.to(dev)))
        loss = F.cross_entropy(logits, y.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"train_loss": loss.detach(), "train_acc_running": (logits.argmax(1) == y.to(dev)).float().mean()}

    def evaluate(st: TrainState):
        row = {"train_acc": accuracy(model, train_images, train_labels, preprocess)}
        if test_images is not None:
            row["test_acc"] = accuracy(model, test_images, test_labels, preprocess)
        return row

    return fit(state, epochs=epochs, batches=batches, step=step, evaluate=evaluate, checkpoint=checkpoint,
               resume=resume, desc=desc)
