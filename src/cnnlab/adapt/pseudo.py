"""Pseudo-labelling (self-training) on the target domain (C-Q4).

Each round: the current model labels the unlabelled target training images; the confident ones
(max softmax probability ≥ ``threshold``) become pseudo-labelled training data; with ``class_balance``
each predicted class keeps at most its share ``r/R · N/C`` of the most confident images in round r of
R (a curriculum after class-balanced self-training, Zou et al. ECCV 2018), so the easy classes cannot
flood the pseudo-labelled set. The model is then fine-tuned on labelled source batches plus
pseudo-labelled target batches (cross-entropy on both), and the next round relabels with it.

The true target labels are used only to *report* the pseudo-labels' precision and the target test
accuracy (marked oracle); the round is chosen without them (source validation accuracy, DEV).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.adapt.dann import Evaluator, features_and_logits
from cnnlab.adapt.domains import DomainPair, preprocess
from cnnlab.adapt.networks import DANNNet
from cnnlab.data import gather_batches, index_batches
from cnnlab.errors import CnnlabError
from cnnlab.precision import autocast_for, fused_optimizer
from cnnlab.runs import finished_round, save_torch, write_json
from cnnlab.train import TrainState, fit

log = logging.getLogger("cnnlab")


@dataclass(frozen=True)
class PseudoConfig:
    rounds: int = 3
    threshold: float = 0.9
    class_balance: bool = True
    epochs_per_round: int = 2
    batch_size: int = 64  # per domain
    lr: float = 0.01 / 11 ** 0.75  # the course schedule's last learning rate
    momentum: float = 0.9
    seed: int = 0
    precision: str = "auto"  # see AdaptConfig

    def __post_init__(self):
        if not 0.0 <= self.threshold < 1.0:
            raise CnnlabError(f"--pl-threshold {self.threshold}: use a probability in [0, 1)")
        if self.rounds < 0 or self.epochs_per_round < 1:
            raise CnnlabError("--pl-rounds must be ≥ 0 and epochs per round ≥ 1")


def select_pseudo_labels(logits: torch.Tensor, *, threshold: float, class_balance: bool,
                         cap_fraction: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C) logits → (indices, pseudo-labels) of the confident images, most confident first per class."""
    prob = torch.softmax(logits.float(), dim=1)
    conf, pred = prob.max(1)
    keep = conf >= threshold
    if not class_balance:
        idx = torch.nonzero(keep).squeeze(1)
        return idx, pred[idx]
    n, c = logits.shape
    cap = max(1, math.ceil(cap_fraction * n / c))
    chosen = []
    for k in range(c):
        cand = torch.nonzero(keep & (pred == k)).squeeze(1)
        order = torch.argsort(conf[cand], descending=True, stable=True)
        chosen.append(cand[order[:cap]])
    idx = torch.cat(chosen).sort().values
    return idx, pred[idx]


def self_train(start: DANNNet, domains: DomainPair, config: PseudoConfig, *, out: str | Path, name: str,
               device: torch.device | str = "cpu", resume: bool = False) -> list[dict]:
    """Run ``config.rounds`` rounds from ``start``; one row per round (round 0 = the starting model)."""
    device = torch.device(device)
    folder = Path(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(start).to(device).to(memory_format=torch.channels_last)  # keeps its input normalisation
    for p in net.parameters():  # a moving-average start (VADA) arrives frozen
        p.requires_grad_(True)
    evaluator = Evaluator(domains, method="pseudo", seed=config.seed, precision=config.precision)
    net.eval()
    with torch.no_grad():
        rows = [{"round": 0, "pseudo_labels": 0, "coverage": 0.0, "pseudo_label_acc": None, **evaluator(net)}]
    s_img, s_lab, t_img = domains.source_train.images, domains.source_train.labels, domains.target_train.images
    b = config.batch_size
    done = folder / "rounds.json"
    for r in range(1, config.rounds + 1):
        if (row := finished_round(folder, r, net, resume=resume, device=device)) is not None:
            rows.append(row)
            continue
        net.eval()
        with torch.no_grad():
            _, logits, _ = features_and_logits(net, t_img, precision=config.precision, keep_features=False)
        idx, pl = select_pseudo_labels(logits, threshold=config.threshold, class_balance=config.class_balance,
                                       cap_fraction=r / config.rounds)
        if len(idx) < b:
            log.warning("pseudo-labelling round %d: only %d confident target images; stopping", r, len(idx))
            break
        pl_acc = (pl == domains.target_train.labels[idx]).float().mean().item()  # oracle: report only
        x_pl = t_img[idx]
        opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                              fused=fused_optimizer(device))
        state = TrainState({"net": net}, {"opt": opt}, generator=torch.Generator().manual_seed(config.seed + r),
                           find_unused=True)  # the domain head is not trained here

        def batches(st: TrainState):
            src = index_batches(len(s_img), b, generator=st.generator, drop_last=True)
            tgt = index_batches(len(x_pl), b, generator=st.generator, drop_last=True)
            for (xs, ys), (xt, yt) in zip(gather_batches(src, s_img, s_lab), gather_batches(tgt, x_pl, pl)):
                yield xs, ys, xt, yt

        def step(st: TrainState, batch) -> dict[str, float]:
            xs, ys, xt, yt = batch
            x = torch.cat([preprocess(xs.to(device)), preprocess(xt.to(device))])
            with autocast_for(config.precision, device):
                logits = st.nets["net"](x)
            loss_s = F.cross_entropy(logits[:len(xs)].float(), ys.to(device))
            loss_t = F.cross_entropy(logits[len(xs):].float(), yt.to(device))
            opt.zero_grad(set_to_none=True)
            (loss_s + loss_t).backward()
            opt.step()
            return {"class_loss": loss_s.detach(), "pseudo_loss": loss_t.detach()}

        fit(state, epochs=config.epochs_per_round, batches=batches, step=step,
            checkpoint=folder / f"round{r}-checkpoint.pt", resume=resume, desc=f"{name} round {r}")
        save_torch(folder / f"round{r}.pt", {k: v.detach().cpu() for k, v in net.state_dict().items()})
        net.eval()
        with torch.no_grad():
            rows.append({"round": r, "pseudo_labels": len(idx), "coverage": len(idx) / len(t_img),
                         "pseudo_label_acc": pl_acc, **evaluator(net)})
        log.info("%s round %d: %d pseudo-labels (precision %.3f), target test acc %.4f", name, r, len(idx),
                 pl_acc, rows[-1]["target_test_acc"])
        write_json(done, rows)
    return rows
