"""Training a DCGAN or a cDCGAN on the shared loop (:func:`cnnlab.train.fit`).

The images are loaded once, resized once to ``size``×``size`` and kept as uint8 in memory; a batch
is an index into that tensor, scaled to [−1, 1] (no per-sample PIL work). Each step draws z from the
run's ``torch.Generator``, makes one generated batch, and runs :func:`~cnnlab.generate.steps.d_step`
then :func:`~cnnlab.generate.steps.g_step` on it (the course's order). ``fit`` checkpoints G, D, both
optimisers and every RNG state after each epoch; the fixed noise and the progress snapshots travel
in ``state.extra``, so ``--resume`` continues bit-exactly on CPU.

The run folder gets ``steps.csv`` (per step: D loss, G loss, mean D(x), mean D(G(z))),
``per_epoch.csv`` and ``metrics.json`` (judge metrics after every epoch, i.e. every checkpoint),
``figures/progress/step_*.png`` (the fixed-noise grid every N steps), ``progress.gif``,
``progress_strip.png``, ``curves.png``, ``samples.png`` and, for the cDCGAN, ``cdcgan_grid.png``.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn as nn

from cnnlab import distributed
from cnnlab.errors import CnnlabError, TrainingDiverged
from cnnlab.generate import figures
from cnnlab.generate.data import GANData, load_gan_data, resize_uint8, to_gan_range  # noqa: F401  (public here too)
from cnnlab.ema import ema_copy, ema_decay, ema_update
from cnnlab.generate.judge import Judge, RealReference, judge_metrics, load_judge, real_reference
from cnnlab.generate.networks import COND_ARCHS, MODELS, build_gan, count_parameters
from cnnlab.generate.steps import D_LOSSES, G_LOSSES, d_step, g_step
from cnnlab.precision import PRECISIONS, autocast, fused_optimizer, memory_format, use_bf16
from cnnlab.runs import Run, resolve_device, write_csv

log = logging.getLogger("cnnlab")


@dataclass(frozen=True)
class GANConfig:
    """The course's defaults (PRACTICAL.md Part D) unless overridden; checked when built."""

    model: str = "dcgan"  # dcgan | cdcgan
    dataset: str = "mnist-embedded"  # any load_dataset name, cifar10, imagefolder:PATH
    size: int = 32  # 32 (the course) or 64 (one more block, D-Q5)
    nz: int = 100
    ngf: int | None = None  # None: the course's width (DCGAN 32, cDCGAN 128)
    ndf: int | None = None  # None: the course's width (DCGAN 32, cDCGAN 64)
    batch_size: int = 128
    epochs: int = 5
    lr_d: float = 2e-4
    lr_g: float = 5e-4
    beta1: float = 0.5
    beta2: float = 0.999
    g_loss: str = "non-saturating"  # or "saturating" (D-Q3)
    init: str = "dcgan"  # N(0, 0.02); or "pytorch" (the framework's default init, D-Q5)
    cond_d: bool = True  # cDCGAN: give y to D (False: D-Q7)
    subset: int | None = None  # train on N images only (a fixed random subset; budgets, smoke tests)
    sample_every: int = 0  # steps between fixed-noise grids; 0: about 20 grids per run
    eval_samples: int = 2000  # generated images judged after each epoch
    judge: str | None = None  # digit classifier's dataset; None: mnist for mnist, else mnist-embedded
    judge_epochs: int = 8  # the shared cached classifier; dry runs use 1
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16, else fp32
    max_loss: float = 1e3  # a loss above this counts as exploding: stop, keep the last good checkpoint
    compile: bool = False  # torch.compile G and D's logits for the training steps (--compile)
    # beyond the course (docs/checks/part_d.md measures each; --preset strong combines what helps)
    loss: str = "bce"  # D's loss: bce (the course; G then uses g_loss) or hinge (G: −E[D(G(z))])
    spectral_norm: bool = False  # D's weights spectrally normalised, its BatchNorms removed
    r1: float = 0.0  # R1 penalty weight γ on real images (0: off)
    r1_every: int = 16  # lazy R1: applied every k-th D step with weight k·γ
    ema: float = 0.0  # decay of the moving average of G's weights that samples come from (0: off)
    cond_arch: str = "concat"  # cdcgan: concat (the course's one-hot branches) or projection (cBN G, projection D)
    second_judge: bool = True  # also judge the final samples with the second, independent classifier

    def __post_init__(self):
        self.validate()

    def validate(self) -> "GANConfig":
        if self.model not in MODELS:
            raise CnnlabError(f"--model {self.model!r}: choose one of {', '.join(MODELS)}")
        if self.g_loss not in G_LOSSES:
            raise CnnlabError(f"--g-loss {self.g_loss!r}: choose one of {', '.join(G_LOSSES)}")
        if self.loss not in D_LOSSES:
            raise CnnlabError(f"--loss {self.loss!r}: choose one of {', '.join(D_LOSSES)}")
        if self.cond_arch not in COND_ARCHS:
            raise CnnlabError(f"--cond-arch {self.cond_arch!r}: choose one of {', '.join(COND_ARCHS)}")
        if not 0 <= self.ema < 1:
            raise CnnlabError(f"--ema {self.ema}: the moving average's decay must be in [0, 1) (0: off; e.g. 0.999)")
        if self.r1 < 0 or self.r1_every < 1:
            raise CnnlabError(f"--r1 {self.r1} / --r1-every {self.r1_every}: need r1 ≥ 0 and r1-every ≥ 1")
        if self.precision not in PRECISIONS:
            raise CnnlabError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        for name in ("nz", "batch_size", "epochs", "eval_samples"):
            if getattr(self, name) < 1:
                raise CnnlabError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_d", "lr_g"):
            if not getattr(self, name) > 0:
                raise CnnlabError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        return self


# --------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample(G: nn.Module, z: torch.Tensor, y: torch.Tensor | None = None, *, bf16: bool = False,
           batch_size: int = 500) -> torch.Tensor:
    """G(z[, y]) in eval mode (BatchNorm with running statistics), float32 in [−1, 1], on CPU."""
    was_training = G.training
    G.eval()
    dev = next(G.parameters()).device
    out = []
    try:
        for s in range(0, len(z), batch_size):
            ys = None if y is None else y[s:s + batch_size].to(dev)
            with autocast(dev, bf16):
                out.append(G(z[s:s + batch_size].to(dev), ys).float().cpu())
    finally:
        G.train(was_training)
    return torch.cat(out)


def fixed_inputs(cfg: GANConfig, num_classes: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The fixed noise of the progress grids: 64 z (DCGAN); 15 z × every class, class-major (cDCGAN,
    the course's final test: one column per z)."""
    if cfg.model == "dcgan":
        return torch.randn(64, cfg.nz, generator=generator), None
    z = torch.randn(15, cfg.nz, generator=generator)
    return z.repeat(num_classes, 1), torch.arange(num_classes).repeat_interleave(15)


# --------------------------------------------------------------------------- training
@dataclass
class GANRun:
    """What :func:`train_gan` returns: the run folder, its final metrics and the trained networks
    (``G``: the generator samples come from, i.e. the moving average when ``ema`` is on)."""

    root: Path
    metrics: dict
    G: nn.Module
    D: nn.Module
    config: GANConfig
    history: list[dict] = field(default_factory=list)


_REFERENCES: dict[tuple, RealReference] = {}  # real-image statistics, once per process


def _reference(judge: Judge, data: GANData, size: int) -> RealReference:
    key = (id(judge), data.name, size, len(data.test))
    if key not in _REFERENCES:
        _REFERENCES[key] = real_reference(judge, data.test)
    return _REFERENCES[key]


def train_gan(cfg: GANConfig, *, out: str | Path, seed: int = 0, device: str | torch.device = "auto",
              data_root=None, download: bool = False, resume: bool = False, data: GANData | None = None,
              judge: Judge | None = None, command: str = "gan train", figures: bool = True) -> GANRun:
    """Train ``cfg`` into the run folder ``out`` and judge it. ``data``/``judge`` may be passed in
    to share them across the runs of a sweep; ``figures=False`` skips the matplotlib figures (the
    CSV/JSON files, the progress grids and checkpoints are always written)."""
    cfg.validate()
    device = resolve_device(device) if isinstance(device, str) else device
    data = data or load_gan_data(cfg.dataset, size=cfg.size, data_root=data_root, download=download,
                                 subset=cfg.subset)
    if cfg.model == "cdcgan" and len(data.classes) < 2:
        raise CnnlabError(f"--model cdcgan needs a labelled dataset with classes; {cfg.dataset} has {len(data.classes)}")
    n_batches = len(data.train) // cfg.batch_size
    if n_batches == 0:
        raise CnnlabError(f"{cfg.dataset}: {len(data.train)} training images, fewer than one batch of "
                          f"{cfg.batch_size}; lower --batch-size")
    judge = judge or load_judge(cfg.judge or ("mnist" if cfg.dataset == "mnist" else "mnist-embedded"),
                                data_root=data_root, epochs=cfg.judge_epochs)
    reference = _reference(judge, data, cfg.size)
    judge2 = None
    if cfg.second_judge and data.digits:
        judge2 = load_judge(cfg.judge or ("mnist" if cfg.dataset == "mnist" else "mnist-embedded"),
                            data_root=data_root, epochs=cfg.judge_epochs, second=True)
        _reference(judge2, data, cfg.size)  # once per process, before the clock starts
    bf16 = use_bf16(cfg.precision, device)
    total_steps = cfg.epochs * n_batches
    every = cfg.sample_every or max(1, round(total_steps / 20))

    run = Run.create(out, command, cfg, seed, resume=resume)
    ckpt = run.checkpoints / "last.pt"
    progress_dir = run.figures / "progress"
    if not resume:  # a fresh run: drop what an older run left in this folder
        ckpt.unlink(missing_ok=True)
        shutil.rmtree(progress_dir, ignore_errors=True)
    session = _Session(cfg, run, ckpt, progress_dir, data, judge, judge2, reference, device, bf16, every, seed,
                       resume, figures)
    try:
        return _train(session)
    finally:
        run.close()


@dataclass(frozen=True)
class _Session:
    """Everything one training run of ``train_gan`` works with, resolved before it starts."""

    cfg: GANConfig
    run: Run
    ckpt: Path
    progress_dir: Path
    data: GANData
    judge: Judge
    judge2: Judge | None  # the second judge (final samples only)
    reference: RealReference
    device: torch.device
    bf16: bool
    every: int  # steps between fixed-noise grids
    seed: int
    resume: bool
    draw: bool  # matplotlib figures


def gan_optimizer(net: nn.Module, lr: float, cfg: GANConfig, device: torch.device | str) -> torch.optim.Adam:
    """Adam with the run's betas (the course's β1 0.5), one fused kernel for all of ``net``'s parameters where
    it runs (a per-step cost worth ~10% of a small CPU step)."""
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2),
                            fused=fused_optimizer(torch.device(device)))


def _train(session: _Session) -> GANRun:
    from cnnlab.data import gather_batches, held_on, index_batches
    from cnnlab.train import TrainState, fit

    cfg, run, ckpt, progress_dir, data, judge, _, reference, device, bf16, every, seed, resume, draw = (
        getattr(session, f.name) for f in fields(session))

    num_classes = len(data.classes)
    torch.manual_seed(seed)
    G, D = build_gan(cfg.model, nz=cfg.nz, ngf=cfg.ngf, ndf=cfg.ndf, nc=data.channels, size=cfg.size,
                     num_classes=num_classes, init=cfg.init, cond_d=cfg.cond_d, cond_arch=cfg.cond_arch,
                     spectral_norm=cfg.spectral_norm, generator=torch.Generator().manual_seed(seed))
    fmt = memory_format(device)
    G.to(device, memory_format=fmt)
    D.to(device, memory_format=fmt)
    opt_g, opt_d = gan_optimizer(G, cfg.lr_g, cfg, device), gan_optimizer(D, cfg.lr_d, cfg, device)
    G_ema = ema_copy(G) if cfg.ema > 0 else None
    G_out = G_ema if G_ema is not None else G  # what samples (grids, judge) come from
    gen = torch.Generator().manual_seed(seed)
    # D is called through its logits (fp32 losses); under torchrun DDP wraps that call. G's step goes
    # through D itself, whose parameters g_step freezes: only D's own step synchronises D's gradients.
    state = TrainState({"G": G, "D": D, **({"G_ema": G_ema} if G_ema is not None else {})},
                       {"G": opt_g, "D": opt_d}, generator=gen, calls={"D": "logits"}, compile=cfg.compile)
    fz, fy = fixed_inputs(cfg, num_classes, gen)
    state.extra = {"fixed_z": fz, "fixed_y": fy if fy is not None else torch.zeros(0, dtype=torch.int64),
                   "strip_steps": [], "strip": [], "sample_every": every}  # a resumed run keeps its cadence
    cond = cfg.model == "cdcgan"
    nrow = 15 if cond else 8
    eval_gen = torch.Generator().manual_seed(seed + 1)
    eval_z = torch.randn(cfg.eval_samples, cfg.nz, generator=eval_gen)
    eval_y = torch.arange(cfg.eval_samples) % num_classes if cond else None

    def fixed_y():
        return state.extra["fixed_y"] if cond else None

    train_images, train_labels = held_on(device, data.train, data.labels)

    def batches(st):
        yield from gather_batches(index_batches(len(train_images), cfg.batch_size, generator=st.generator,
                                                drop_last=True), train_images, train_labels)

    def snapshot(step: int) -> None:
        imgs = sample(G_out, state.extra["fixed_z"], fixed_y(), bf16=bf16)
        figures.write_grid_png(progress_dir / f"step_{step:06d}.png", imgs, nrow)
        # the strip keeps one sample of each of the first 8 columns (cDCGAN: class 0..7 of z0..z7)
        pick = imgs[:8] if not cond else imgs[torch.arange(8) % num_classes * 15 + torch.arange(8) % 15]
        state.extra["strip_steps"].append(step)
        state.extra["strip"].append(figures.gan_range_to_uint8(pick))

    def step(st, batch):
        x_u8, y = batch
        real = to_gan_range(x_u8).to(device).contiguous(memory_format=fmt)  # B×C×size×size in [−1, 1]
        y = y.to(device) if cond else None
        # the noise of the GLOBAL batch, then this rank's share: under torchrun every rank holds the same
        # generator state, so drawing only len(x_u8) rows would give every rank the same z (a no-op alone)
        z = distributed.shard(torch.randn(cfg.batch_size, cfg.nz, generator=st.generator)).to(device)
        y_fake = distributed.shard(torch.randint(0, num_classes, (cfg.batch_size,), generator=st.generator)).to(device) \
            if cond else None
        forward = functools.partial(autocast, device, bf16)
        with forward():
            fake = st.nets["G"](z, y_fake)  # one generated batch for both steps, as in the course
        r1 = cfg.r1 * cfg.r1_every if cfg.r1 > 0 and st.step % cfg.r1_every == 0 else 0.0
        out = d_step(D, opt_d, real, fake, y, y_fake, forward=forward, logits_of=st.nets["D"], loss=cfg.loss, r1=r1)
        out.update(g_step(D, opt_g, fake, y_fake, loss="hinge" if cfg.loss == "hinge" else cfg.g_loss,
                          forward=forward))
        if G_ema is not None:
            ema_update(G_ema, G, ema_decay(cfg.ema, st.step))
        if (st.step + 1) % st.extra["sample_every"] == 0:  # st.step counts the steps before this one
            snapshot(st.step + 1)
        return out

    eval_seconds = [0.0]  # judged samples are not training: kept out of images/s

    def evaluate(st):
        t = time.perf_counter()
        fake = sample(G_out, eval_z, eval_y, bf16=bf16)
        m = judge_metrics(judge, fake, reference, eval_y, digits=data.digits)
        eval_seconds[0] += time.perf_counter() - t
        return {k: v for k, v in m.items() if isinstance(v, float) and k != "max_entropy"}  # histogram: at the end

    log.info("gan: %s on %s (%d images, %d×%d×%d), G %d params, D %d params, %s, %d steps",
             cfg.model, data.name, len(data.train), data.channels, cfg.size, cfg.size, count_parameters(G),
             count_parameters(D), "bf16 autocast" if bf16 else "fp32", cfg.epochs * (len(data.train) // cfg.batch_size))
    t0 = time.perf_counter()
    status = "finished"
    steps_before = 0
    try:
        if resume and ckpt.exists():
            steps_before = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
        fit(state, epochs=cfg.epochs, batches=batches, step=step, evaluate=evaluate, checkpoint=ckpt, resume=resume,
            log_steps=True, max_abs_loss=cfg.max_loss, desc=f"{cfg.model} {data.name}")
    except TrainingDiverged as e:
        status = f"diverged: {e}"
        run.log_metrics(status=status)
        _write_outputs(session, state, G_out, nrow, eval_z, eval_y, train_seconds=time.perf_counter() - t0 - eval_seconds[0],
                       steps_run=state.step - steps_before, final=False)
        raise
    seconds = time.perf_counter() - t0 - eval_seconds[0]
    if not state.extra["strip_steps"] or state.extra["strip_steps"][-1] != state.step:
        snapshot(state.step)  # the final grid
    metrics = _write_outputs(session, state, G_out, nrow, eval_z, eval_y, train_seconds=seconds,
                             steps_run=state.step - steps_before, final=True)
    metrics = run.log_metrics(status=status)
    return GANRun(run.root, metrics, G_out, D, cfg, list(state.history))


def _write_outputs(session: _Session, state, G, nrow, eval_z, eval_y, *, train_seconds: float, steps_run: int,
                   final: bool) -> dict:
    """steps.csv, per-epoch table, metrics.json and the figures (also after a divergence)."""
    run, cfg, judge, reference, data, bf16 = (session.run, session.cfg, session.judge, session.reference,
                                              session.data, session.bf16)
    cond = cfg.model == "cdcgan"
    write_csv(run.root / "steps.csv", state.step_log)  # not mirrored in metrics.json: one row per step
    if state.history:
        run.write_table("per_epoch", state.history)
    metrics: dict = {"model": cfg.model, "dataset": data.name, "train_images": len(data.train),
                     "steps": state.step, "epochs_done": state.epoch, "precision": "bf16" if bf16 else "fp32",
                     "params_G": count_parameters(G), "params_D": count_parameters(state.modules["D"]),
                     "train_seconds": round(train_seconds, 2),
                     "images_per_s": round(steps_run * cfg.batch_size / max(train_seconds, 1e-9), 1),
                     "ema": cfg.ema > 0, "judge": _judge_info(judge, reference)}
    fake = fixed = None
    if final:
        fake = sample(G, eval_z, eval_y, bf16=bf16)
        metrics["final"] = judge_metrics(judge, fake, reference, eval_y, digits=data.digits)
        # the same numbers for as many real training images: the floor (FD) and ceiling (conditional accuracy:
        # the judge's accuracy on them) that a G reproducing its training digits would reach
        pick = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:len(eval_z)]
        real_y = data.labels[pick] if cond else None
        metrics["real"] = judge_metrics(judge, data.train[pick], reference, real_y, digits=data.digits)
        if session.judge2 is not None:  # the same numbers from the second, independent judge
            ref2 = _reference(session.judge2, data, cfg.size)
            metrics["judge2"] = _judge_info(session.judge2, ref2)
            metrics["final_judge2"] = judge_metrics(session.judge2, fake, ref2, eval_y, digits=data.digits)
            metrics["real_judge2"] = judge_metrics(session.judge2, data.train[pick], ref2, real_y, digits=data.digits)
        fixed = sample(G, state.extra["fixed_z"], state.extra["fixed_y"] if cond else None, bf16=bf16)
    if session.draw:
        _draw(run, cfg, state, data, metrics.get("final", {}), fake, fixed, nrow, cond)
    return run.log_metrics(**metrics)


def _judge_info(judge: Judge, reference: RealReference) -> dict:
    return {"classifier": judge.bundle.arch, "trained_on": judge.bundle.extra.get("dataset"),
            "epochs": judge.bundle.extra.get("epochs"), "seed": judge.bundle.extra.get("seed"),
            "test_acc": judge.test_acc, "real_reference_images": reference.n}


def _draw(run, cfg, state, data, final_m, fake, fixed, nrow, cond) -> None:
    import numpy as np
    from PIL import Image

    title = f"{cfg.model} on {data.name}"
    if state.step_log:
        run.save_figure(figures.curves_figure(state.step_log, title=title), "curves")
    if state.history:
        run.save_figure(figures.epoch_metrics_figure(state.history), "judge_per_epoch")
    snaps = list(zip(state.extra["strip_steps"], state.extra["strip"]))
    if snaps:
        run.save_figure(figures.progress_strip_figure(snaps), "progress_strip")
    frames = sorted((run.figures / "progress").glob("step_*.png"))
    if frames:
        figures.write_gif(run.figures / "progress.gif", [np.asarray(Image.open(f).convert("RGB")) for f in frames])
    if fixed is None:
        return
    run.save_figure(figures.samples_figure(fixed if not cond else fake[:100], nrow=nrow if not cond else 10,
                                           title=f"{title}: FD {final_m.get('frechet', math.nan):.2f}"), "samples")
    if cond:
        run.save_figure(figures.conditional_grid_figure(
            fixed, n_z=15, classes=data.classes,
            title=f"{title}: conditional accuracy {final_m.get('cond_acc', math.nan):.3f}"), "cdcgan_grid")
    if "class_hist" in final_m:
        run.save_figure(figures.class_histogram_figure({cfg.model: final_m["class_hist"]}, data.classes),
                        "class_histogram")


# --preset: named sets of settings on top of the course's defaults. "strong" combines the practice that
# measurably lowered the Fréchet distance at the course's size, batch and budget: SN-GAN's hinge loss and
# spectrally normalised D, an EMA generator, Adam with β = (0, 0.9) as SAGAN (Zhang et al. 2019) trains, and twice the
# course's learning rates (chosen on development seeds 10 and 11: docs/checks/part_d.md, session 15).
PRESETS: dict[str, dict] = {
    "course": {},
    "strong": {"ema": 0.999, "loss": "hinge", "spectral_norm": True, "beta1": 0.0, "beta2": 0.9,
               "lr_d": 4e-4, "lr_g": 1e-3},
}
# what a preset sets differently for one model. The cDCGAN (8× the DCGAN's G and 16× its D at the course's widths)
# keeps the course's learning rates and one-hot conditioning: at twice the rates its digits match the asked class
# less often (development seed 10, docs/checks/part_d.md, session 16)
PRESET_MODELS: dict[str, dict[str, dict]] = {
    "strong": {"cdcgan": {"lr_d": GANConfig.lr_d, "lr_g": GANConfig.lr_g}},
}


def preset_settings(name: str, model: str = "dcgan") -> dict:
    """The settings preset ``name`` gives a ``model`` (before the flags a user gives, which win)."""
    return {**PRESETS[name], **PRESET_MODELS.get(name, {}).get(model, {})}


def preset_help(name: str) -> str:
    def words(settings: dict) -> str:
        return ", ".join(k.replace("_", "-") if v is True else f"{k.replace('_', '-')} {v}" for k, v in settings.items())

    per_model = "".join(f"; for the {m}: {words(d)}" for m, d in PRESET_MODELS.get(name, {}).items())
    return (words(PRESETS[name]) or "the course's settings") + per_model


def config_from(base: GANConfig | None = None, **overrides) -> GANConfig:
    """A copy of ``base`` (default: the course's settings) with ``overrides``."""
    d = asdict(base or GANConfig())
    unknown = set(overrides) - set(d)
    if unknown:
        raise CnnlabError(f"unknown GAN setting(s) {', '.join(sorted(unknown))}; known: {', '.join(d)}")
    d.update(overrides)
    return GANConfig(**d)
