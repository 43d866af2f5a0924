"""DIRT-T: refine a VADA model on the target alone (Shu, Bui, Narui & Ermon, ICLR 2018).

VADA still carries the source's classifier: once the domains are aligned, the source term keeps
pulling the boundary where the source wants it. DIRT-T drops the source and walks the model along
the target's own clusters, in rounds: each round trains a student from the current teacher with

    β · KL(teacher(x_t) ‖ student(x_t)) + λ_t · (H(student(x_t)) + VAT(student, x_t))

so every round can move the boundary only a little (the KL keeps it near the teacher, a natural-
gradient-like proximal step), while the conditional entropy and VAT push it out of dense target
regions. The next round's teacher is the student's moving average. Round 0 is the start model.
Target labels are read only to report accuracies; rounds are chosen without them.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.adapt.dann import Evaluator
from cnnlab.adapt.domains import DomainPair, preprocess
from cnnlab.adapt.networks import DANNNet
from cnnlab.adapt.vada import conditional_entropy, kl_from_logits, vat_loss
from cnnlab.data import gather_batches, index_batches
from cnnlab.ema import ema_copy, ema_decay, ema_update
from cnnlab.errors import CnnlabError
from cnnlab.precision import autocast_for, fused_optimizer
from cnnlab.runs import finished_round, save_torch, write_json
from cnnlab.train import TrainState, fit

log = logging.getLogger("cnnlab")


@dataclass(frozen=True)
class RefineConfig:
    """DIRT-T's settings for digits (Shu et al. 2018): β = λ_t = 0.01, Adam 1e-3 (β1 0.5), radius 3.5,
    moving average 0.998; a round is ``epochs_per_round`` passes over the target training images."""

    rounds: int = 2
    epochs_per_round: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    teacher_weight: float = 0.01  # β
    target_weight: float = 0.01  # λ_t
    vat_radius: float = 3.5
    ema: float = 0.998
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self):
        if self.rounds < 0 or self.epochs_per_round < 1 or self.batch_size < 1:
            raise CnnlabError("--dirtt-rounds must be ≥ 0, epochs per round and the batch ≥ 1")
        if min(self.lr, self.vat_radius) <= 0 or min(self.teacher_weight, self.target_weight) < 0:
            raise CnnlabError("DIRT-T: the learning rate and radius must be > 0, the weights ≥ 0")


def dirtt_losses(student: torch.nn.Module, teacher: torch.nn.Module, xt: torch.Tensor, config: RefineConfig, *,
                 generator: torch.Generator | None = None, outputs=None) -> dict[str, torch.Tensor]:
    """The losses of one refinement step on a preprocessed target batch; ``total`` is what is minimised.
    ``outputs``: what calls the student (its DDP wrapper under torchrun)."""
    with torch.no_grad(), autocast_for(config.precision, xt.device):
        t_logits = teacher(xt).float()
    with autocast_for(config.precision, xt.device):
        lt = (outputs or student)(xt).float()
    out = {"teacher_kl": kl_from_logits(t_logits, lt), "target_entropy_loss": conditional_entropy(lt),
           "target_vat_loss": vat_loss(student, xt, lt, config.vat_radius, generator=generator,
                                       precision=config.precision)}
    out["total"] = (config.teacher_weight * out["teacher_kl"]
                    + config.target_weight * (out["target_entropy_loss"] + out["target_vat_loss"]))
    return out


def refine(start: DANNNet, domains: DomainPair, config: RefineConfig, *, out: str | Path, name: str,
           device: torch.device | str = "cpu", resume: bool = False) -> list[dict]:
    """``config.rounds`` DIRT-T rounds from ``start``; one row per round (round 0 = the start model).
    Each round's weights (the student's moving average, the next teacher) go to ``out/name/round<r>.pt``."""
    device = torch.device(device)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    teacher = ema_copy(start).to(device).to(memory_format=torch.channels_last).eval()
    evaluator = Evaluator(domains, method="dirtt", seed=config.seed, precision=config.precision)
    with torch.no_grad():
        rows = [{"round": 0, **evaluator(teacher)}]
    t_img = domains.target_train.images
    if len(t_img) < config.batch_size:
        raise CnnlabError(f"DIRT-T batch {config.batch_size} is larger than the target training set ({len(t_img)})")
    done = folder / "rounds.json"
    for r in range(1, config.rounds + 1):
        if (row := finished_round(folder, r, teacher, resume=resume, device=device)) is not None:
            rows.append(row)
            continue
        student = copy.deepcopy(teacher).train()
        for p in student.parameters():
            p.requires_grad_(True)
        average = ema_copy(student)
        opt = torch.optim.Adam(student.parameters(), lr=config.lr, betas=(0.5, 0.999), fused=fused_optimizer(device))
        state = TrainState({"net": student, "net_ema": average}, {"opt": opt},
                           generator=torch.Generator().manual_seed(config.seed + 1000 + r), find_unused=True)

        def batches(st: TrainState):
            yield from gather_batches(index_batches(len(t_img), config.batch_size, generator=st.generator,
                                                    drop_last=True), t_img)

        def step(st: TrainState, batch) -> dict[str, torch.Tensor]:
            (xt,) = batch
            out_ = dirtt_losses(student, teacher, preprocess(xt.to(device)), config, generator=st.generator,
                                outputs=st.nets["net"])
            opt.zero_grad(set_to_none=True)
            out_.pop("total").backward()
            opt.step()
            ema_update(average, student, ema_decay(config.ema, st.step))
            return {k: v.detach() for k, v in out_.items()}

        fit(state, epochs=config.epochs_per_round, batches=batches, step=step,
            checkpoint=folder / f"round{r}-checkpoint.pt", resume=resume, desc=f"{name} round {r}")
        teacher.load_state_dict(average.state_dict())
        save_torch(folder / f"round{r}.pt", {k: v.detach().cpu() for k, v in teacher.state_dict().items()})
        with torch.no_grad():
            rows.append({"round": r, **evaluator(teacher)})
        log.info("%s round %d: target test acc %.4f", name, r, rows[-1]["target_test_acc"])
        write_json(done, rows)
    return rows
