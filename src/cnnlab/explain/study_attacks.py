"""Fooling-image and adversarial-attack studies (``cnnlab explain fool|attack``, lab B-Q5..B-Q7):
run the attacks, tabulate each image (size, visibility, 8-bit survival), summarise, draw the
examples and ask whether the images also fool other networks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain import figures
from cnnlab.explain.attacks import AttackResult, fgsm, ifgsm, pgd
from cnnlab.explain.fooling import fooling_images, image_target_pairs, random_targets
from cnnlab.explain.inputs import short_name, normalised_to_pixels
from cnnlab.explain.metrics import attack_table, summarize, transfer_matrix
from cnnlab.explain.saliency import predict_proba
from cnnlab.models import ModelBundle
from cnnlab.runs import Run


def num_classes(bundle: ModelBundle, images: torch.Tensor) -> int:
    return len(bundle.categories or []) or predict_proba(bundle, images[:1]).shape[1]


def random_pair_targets(bundle: ModelBundle, images: torch.Tensor, labels: torch.Tensor, k: int,
                        generator: torch.Generator) -> torch.Tensor:
    """(N, k) random targets per image, each different from its label (the clean prediction where
    the label is unknown, -1)."""
    if k < 1:
        raise CnnlabError(f"--targets-per-image {k}: must be at least 1")
    ref = labels if bool((labels >= 0).all()) else torch.where(labels >= 0, labels,
                                                                predict_proba(bundle, images).argmax(1))
    return random_targets(ref, k, num_classes(bundle, images), generator=generator)


# --------------------------------------------------------------------------- fooling images
@dataclass(frozen=True)
class FoolingConfig:
    eta: float = 1.0  # step length in normalised units (the course's 1)
    max_iter: int = 100  # pairs not fooled by then are failures
    clamp: bool = True  # keep every iterate a valid image
    batch_size: int = 32

    def __post_init__(self):
        if self.max_iter < 1:
            raise CnnlabError(f"--max-iter {self.max_iter}: must be at least 1 (the course's cap is 100)")
        if not self.eta > 0:
            raise CnnlabError(f"--eta {self.eta}: must be > 0 (the course's step is 1)")
        if self.batch_size < 1:
            raise CnnlabError(f"--batch-size {self.batch_size}: must be at least 1")


@dataclass(frozen=True)
class FoolingResult:
    result: AttackResult  # one entry per (image, target) pair
    index: torch.Tensor  # the image of each pair
    rows: list[dict]  # per pair (metrics.attack_table)
    summary: dict  # metrics.summarize
    transfer: list[dict] | None
    figures: dict[str, Path] = field(default_factory=dict)


def fooling_study(run: Run, bundle: ModelBundle, images: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
                  cfg: FoolingConfig, *, ids: Sequence | None = None, label: str = "fooling",
                  table: str = "per_pair", figure: str | None = "fooling", show: int | None = 6,
                  failed: str = " FAILED", curve: str | None = "success_curve", curve_label: str | None = None,
                  transfer: Mapping[str, ModelBundle] | None = None) -> FoolingResult:
    """The course's fooling image for each image × each of its ``targets`` (N, K). ``ids``: the
    images' names in tables and titles; ``figure``/``curve`` None: not drawn; ``transfer``: networks
    (the first one ``bundle`` itself) given the fooling images."""
    imgs, lbls, tgts, index = image_target_pairs(images, labels, targets)
    res = fooling_images(bundle, imgs, tgts, labels=lbls, eta=cfg.eta, max_iter=cfg.max_iter, clamp=cfg.clamp,
                         batch_size=cfg.batch_size)
    rows = attack_table(bundle, res)
    for r, i in zip(rows, index.tolist()):
        r["image"] = ids[i] if ids is not None else i
    run.write_table(table, rows)
    summary = summarize(rows, label)
    figs = {}
    if figure:
        sel = list(range(len(res) if show is None else min(len(res), show)))
        titles = [(f"{short_name(rows[i]['label'])} (image {rows[i]['image']})",
                   f"→ {short_name(rows[i]['pred'])}, {rows[i]['iterations']} it"
                   + ("" if rows[i]["success"] else failed)) for i in sel]
        figs["fooling"] = run.save_figure(figures.fooling_figure(normalised_to_pixels(bundle, res.originals[sel]),
                                                                 normalised_to_pixels(bundle, res.images[sel]), titles), figure)
    if curve:
        runs = {curve_label or label: (res.iterations.numpy(), res.success.numpy())}
        figs["curve"] = run.save_figure(figures.success_curve(runs, cfg.max_iter), curve)
    rows_t = None
    if transfer:
        rows_t = transfer_matrix({next(iter(transfer)): (bundle, res)}, transfer)
        run.write_table("fooling_transfer", rows_t)
    return FoolingResult(res, index, rows, summary, rows_t, figs)


# --------------------------------------------------------------------------- bounded attacks
ATTACK_NAMES = ("fgsm", "ifgsm", "pgd-linf", "pgd-l2")
COURSE_NAMES = {"fgsm": "FGSM", "ifgsm": "I-FGSM", "pgd-linf": "PGD L∞", "pgd-l2": "PGD L2"}


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a study and how it is reported."""

    name: str  # fgsm, ifgsm, pgd-linf or pgd-l2
    targeted: bool
    label: str  # the summary's "attack"
    key: str  # its row in the examples figure
    table: str | None = None  # its per-image table
    transfer_key: str | None = None  # its row in the transfer matrix (None: not transferred)
    show: bool = True  # in the examples figure

    def __post_init__(self):
        if self.name not in ATTACK_NAMES:
            raise CnnlabError(f"--attack {self.name!r}: choose from fgsm, ifgsm, pgd (--norm linf or l2)")


def command_attacks(names: Sequence[str], targeted: bool, model: str) -> tuple[AttackSpec, ...]:
    """``cnnlab explain attack``: fgsm, pgd-linf-targeted …, one table each, transfer rows "<model> <name>"."""
    return tuple(AttackSpec(n, targeted, n + ("-targeted" if targeted else ""), n, f"per_image_{n}", f"{model} {n}")
                 for n in names)


def course_attacks() -> tuple[AttackSpec, ...]:
    """Lab B-Q7: each attack untargeted then targeted; FGSM and PGD transferred; untargeted ones shown."""
    out = []
    for targeted in (False, True):
        for n in ATTACK_NAMES:
            label = f"{COURSE_NAMES[n]} {'targeted' if targeted else 'untargeted'}"
            out.append(AttackSpec(n, targeted, label, label, transfer_key=None if n == "ifgsm" else label,
                                  show=not targeted))
    return tuple(out)


@dataclass(frozen=True)
class AttackConfig:
    attacks: tuple[AttackSpec, ...]  # see command_attacks, course_attacks
    eps: float = 8 / 255  # L∞ budget, pixel units of [0,1] images
    eps_l2: float = 1.0  # L2 budget, pixel units
    alpha: float | None = None  # step; None: ε/4 (L∞), ε/5 (L2)
    steps: int = 10  # I-FGSM and PGD
    early_stop: bool = True
    batch_size: int = 64

    def __post_init__(self):
        object.__setattr__(self, "attacks", tuple(self.attacks))
        names = {a.name for a in self.attacks}
        if not names:
            raise CnnlabError("--attack: no attack to run; choose fgsm, ifgsm, pgd or all")
        if names - {"pgd-l2"} and not self.eps > 0:
            raise CnnlabError(f"--eps {self.eps}: must be > 0, in pixel units of [0,1] images (e.g. 8/255)")
        if "pgd-l2" in names and not self.eps_l2 > 0:
            raise CnnlabError(f"--eps-l2 {self.eps_l2}: must be > 0, in pixel units of [0,1] images (e.g. 1)")
        if self.alpha is not None and not self.alpha > 0:
            raise CnnlabError(f"--alpha {self.alpha}: must be > 0 (or leave it out: ε/4 for L∞, ε/5 for L2)")
        if names - {"fgsm"} and self.steps < 1:
            raise CnnlabError(f"--steps {self.steps}: must be at least 1")
        if self.batch_size < 1:
            raise CnnlabError(f"--batch-size {self.batch_size}: must be at least 1")


@dataclass(frozen=True)
class AttackRun:
    spec: AttackSpec
    result: AttackResult
    rows: list[dict]  # per image (metrics.attack_table)
    summary: dict  # metrics.summarize


@dataclass(frozen=True)
class AttackStudy:
    runs: tuple[AttackRun, ...]
    table: list[dict]  # the summaries as written (and any extra rows)
    transfer: list[dict] | None
    figures: dict[str, Path]

    @property
    def by_label(self) -> dict[str, dict]:
        return {r["attack"]: r for r in self.table}


def _attack(bundle: ModelBundle, images, spec: AttackSpec, cfg: AttackConfig, labels, targets, g) -> AttackResult:
    kw = dict(targets=targets if spec.targeted else None, labels=labels, batch_size=cfg.batch_size)
    if spec.name == "fgsm":
        return fgsm(bundle, images, eps=cfg.eps, **kw)
    if spec.name == "ifgsm":
        return ifgsm(bundle, images, eps=cfg.eps, alpha=cfg.alpha or cfg.eps / 4, steps=cfg.steps,
                     early_stop=cfg.early_stop, **kw)
    norm = spec.name.split("-")[1]
    eps = cfg.eps if norm == "linf" else cfg.eps_l2
    return pgd(bundle, images, eps=eps, alpha=cfg.alpha or (eps / 4 if norm == "linf" else eps / 5), steps=cfg.steps,
               norm=norm, early_stop=cfg.early_stop, generator=g, **kw)


def attack_study(run: Run, bundle: ModelBundle, images: torch.Tensor, cfg: AttackConfig, *,
                 labels: torch.Tensor | None = None, targets: torch.Tensor | None = None, ids: Sequence | None = None,
                 generator: torch.Generator | None = None, table: str = "summary", extra_rows: Sequence[dict] = (),
                 figure: str = "adversarial_examples", examples: int = 8,
                 transfer: Mapping[str, ModelBundle] | None = None, transfer_table: str = "transfer") -> AttackStudy:
    """Every attack of ``cfg`` on ``images`` (targeted ones towards ``targets``; untargeted ones away
    from ``labels``, or from the clean prediction when None). ``generator``: PGD's random starts.
    ``transfer``: networks (``bundle`` among them) given the adversarial images."""
    g = generator or torch.Generator().manual_seed(0)
    runs = []
    for spec in cfg.attacks:
        res = _attack(bundle, images, spec, cfg, labels, targets, g)
        rows = attack_table(bundle, res)
        if ids is not None:
            for r, i in zip(rows, ids):
                r["image"] = i
        if spec.table:
            run.write_table(spec.table, rows)
        runs.append(AttackRun(spec, res, rows, summarize(rows, spec.label)))
    summary_rows = [r.summary for r in runs] + list(extra_rows)
    run.write_table(table, summary_rows)
    shown = [r for r in runs if r.spec.show]
    figs = {}
    if shown:
        pix = {"original": normalised_to_pixels(bundle, shown[0].result.originals[:examples])}
        titles = {"original": figures.attack_titles(shown[0].rows, examples)[0]}
        for r in shown:
            pix[r.spec.key] = normalised_to_pixels(bundle, r.result.images[:examples])
            titles[r.spec.key] = figures.attack_titles(r.rows, examples)[1]
        figs["examples"] = run.save_figure(figures.image_rows_figure(pix, titles), figure)
    rows_t = None
    if transfer:
        rows_t = transfer_matrix({r.spec.transfer_key: (bundle, r.result) for r in runs if r.spec.transfer_key},
                                 transfer)
        run.write_table(transfer_table, rows_t)
    return AttackStudy(tuple(runs), summary_rows, rows_t, figs)
