"""The D-Q4..Q9 studies: variants of the default GAN trained with the same seed and budget.

Each variant is a named set of overrides of the base settings (:class:`Variant`); ``run_sweep``
trains each into ``<out>/<name>/`` (a full run folder), then writes one comparison grid (a row of
samples per variant) and one metrics table (``sweep.csv`` + ``metrics.json``), plus the latent
interpolation figures drawn from the first dcgan / cdcgan of the sweep.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from cnnlab.errors import CnnlabError, TrainingDiverged
from cnnlab.generate import figures
from cnnlab.generate.train import (GANConfig, GANData, config_from, load_gan_data, preset_help, preset_settings,
                                   sample, train_gan)
from cnnlab.precision import use_bf16
from cnnlab.runs import Run, resolve_device

log = logging.getLogger("cnnlab")


@dataclass(frozen=True)
class Variant:
    help: str
    question: str
    overrides: Callable[[GANConfig], dict] = field(default=lambda base: {})


def _scaled(factor: float) -> Callable[[GANConfig], dict]:
    return lambda b: {"lr_d": b.lr_d * factor, "lr_g": b.lr_g * factor}


VARIANTS: dict[str, Variant] = {
    "default": Variant("the course's DCGAN (ngf = ndf = 32, nz 100, N(0, 0.02), non-saturating)", "D-Q4"),
    "narrow": Variant("ngf = ndf = 8 (4× narrower)", "D-Q5", lambda b: {"ngf": 8, "ndf": 8}),
    "wide": Variant("ngf = ndf = 128 (4× wider; ~16× the compute)", "D-Q5", lambda b: {"ngf": 128, "ndf": 128}),
    "wide64": Variant("ngf = ndf = 64 (2× wider)", "D-Q5", lambda b: {"ngf": 64, "ndf": 64}),
    "pytorch-init": Variant("PyTorch's default init instead of N(0, 0.02)", "D-Q5", lambda b: {"init": "pytorch"}),
    "saturating": Variant("the saturating G loss: minimise log(1 − D(G(z)))", "D-Q3", lambda b: {"g_loss": "saturating"}),
    "lr-equal": Variant("lr_G = lr_D = 2e-4 (the DCGAN paper's)", "D-Q5", lambda b: {"lr_g": 2e-4, "lr_d": 2e-4}),
    "lr-x5": Variant("both learning rates ×5", "D-Q5", _scaled(5.0)),
    "lr-div10": Variant("both learning rates ÷10", "D-Q5", _scaled(0.1)),
    "long": Variant("6× more epochs (the course's 30 instead of 5)", "D-Q5", lambda b: {"epochs": b.epochs * 6}),
    "nz10": Variant("nz = 10", "D-Q5", lambda b: {"nz": 10}),
    "nz1000": Variant("nz = 1000", "D-Q5", lambda b: {"nz": 1000}),
    "size64": Variant("64×64 images (one more block in G and D)", "D-Q5", lambda b: {"size": 64}),
    "cdcgan": Variant("the conditional DCGAN", "D-Q6", lambda b: {"model": "cdcgan"}),
    "cdcgan-no-y": Variant("cDCGAN with y removed from D", "D-Q7", lambda b: {"model": "cdcgan", "cond_d": False}),
    "digits": Variant("another dataset: scikit-learn's UCI digits (8×8 upsampled)", "D-Q5",
                      lambda b: {"dataset": "digits"}),
    "cifar10": Variant("another dataset: CIFAR-10 (needs it under --data-root)", "D-Q5",
                       lambda b: {"dataset": "cifar10", "judge": b.judge or "mnist-embedded"}),
    # beyond the course: established GAN practice, one change at a time, then the preset that combines them
    "ema": Variant("samples from a moving average of G's weights (decay 0.999)", "beyond", lambda b: {"ema": 0.999}),
    "ttur": Variant("two time-scale learning rates: lr_D 4e-4, lr_G 1e-4", "beyond",
                    lambda b: {"lr_d": 4e-4, "lr_g": 1e-4}),
    "spectral-norm": Variant("spectral normalisation in D (its BatchNorms removed)", "beyond",
                             lambda b: {"spectral_norm": True}),
    "hinge": Variant("the hinge loss for D and G", "beyond", lambda b: {"loss": "hinge"}),
    "r1": Variant("an R1 gradient penalty on real images (γ = 1, every 16 steps)", "beyond", lambda b: {"r1": 1.0}),
    "strong": Variant("--preset strong: " + preset_help("strong"), "beyond", lambda b: preset_settings("strong")),
    "cdcgan-projection": Variant("cDCGAN with class-conditional BatchNorm in G and a projection D", "beyond",
                                 lambda b: {"model": "cdcgan", "cond_arch": "projection"}),
    "cdcgan-strong": Variant("cDCGAN with --preset strong", "beyond",
                             lambda b: {"model": "cdcgan", **preset_settings("strong", "cdcgan")}),
}


def variant_config(name: str, base: GANConfig, extra: dict | None = None) -> GANConfig:
    if name not in VARIANTS:
        import difflib

        close = difflib.get_close_matches(name, list(VARIANTS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise CnnlabError(f"--variants: {name!r} is not a study.{hint} Known: {', '.join(VARIANTS)}")
    return config_from(base, **{**VARIANTS[name].overrides(base), **(extra or {})})


@dataclass
class SweepResult:
    root: Path
    rows: list[dict]
    table: Path
    grid: Path | None
    figures: dict[str, Path]
    runs: dict[str, Path]
    generators: dict[str, torch.nn.Module] = field(default_factory=dict)  # trained G per finished variant


TABLE_KEYS = ("frechet", "class_entropy", "confidence", "cond_acc")


def _row(name: str, cfg: GANConfig, metrics: dict) -> dict:
    f = metrics.get("final", {})
    row = {"variant": name, "question": VARIANTS[name].question, "model": cfg.model, "dataset": cfg.dataset,
           "size": cfg.size, "epochs": cfg.epochs, "steps": metrics.get("steps"), "status": metrics.get("status", "?")}
    row.update({k: f.get(k) for k in TABLE_KEYS if k in f})
    if "frechet" in metrics.get("real", {}):  # real training images vs the same test set: the floor
        row["frechet_real"] = metrics["real"]["frechet"]
    if "frechet" in metrics.get("final_judge2", {}):  # the second, independent judge, and its floor
        row["frechet_judge2"] = metrics["final_judge2"]["frechet"]
        row["frechet_real_judge2"] = metrics.get("real_judge2", {}).get("frechet")
    row["images_per_s"] = metrics.get("images_per_s")
    return row


def run_sweep(names: list[str], *, base: GANConfig | None = None, out: str | Path, seed: int = 0,
              device: str | torch.device = "auto", data_root=None, download: bool = False, resume: bool = False,
              extra: dict[str, dict] | None = None, interpolate: bool = True,
              run_figures: bool = True) -> SweepResult:
    """Train every variant in ``names`` (same seed, same base budget) and compare them.
    ``extra``: per-variant overrides on top of the variant's own (e.g. a lab budget);
    ``run_figures=False``: only the sweep's own figures, none in the variants' run folders."""
    base = (base or GANConfig()).validate()
    configs = {n: variant_config(n, base, (extra or {}).get(n)) for n in names}  # all names checked up front
    device = resolve_device(device) if isinstance(device, str) else device
    root = Path(out)
    sweep = Run.create(root, "gan sweep", {"base": base, "variants": names}, seed, resume=resume)
    rows, samples, runs, trained = [], [], {}, {}
    try:
        for name, cfg in configs.items():
            try:
                data = load_gan_data(cfg.dataset, size=cfg.size, data_root=data_root, download=download,
                                     subset=cfg.subset)
            except CnnlabError as e:  # e.g. CIFAR-10 not on this machine: the other variants still run
                log.warning("sweep: %s skipped (%s)", name, e)
                rows.append({**_row(name, cfg, {}), "status": f"skipped: {e}"})
                continue
            log.info("sweep: %s (%s)", name, VARIANTS[name].help)
            try:
                res = train_gan(cfg, out=root / name, seed=seed, device=device, data_root=data_root, resume=resume,
                                data=data, command=f"gan sweep {name}", figures=run_figures)
                metrics, G = res.metrics, res.G
                trained[name] = (res, data)
            except TrainingDiverged as e:
                metrics, G = Run.open(root / name).metrics, None
                log.warning("sweep: %s diverged (%s)", name, e)
            runs[name] = root / name
            row = _row(name, cfg, metrics)
            rows.append(row)
            if G is not None:
                z = torch.randn(10, cfg.nz, generator=torch.Generator().manual_seed(seed + 7))
                y = torch.arange(10) % len(data.classes) if cfg.model == "cdcgan" else None
                fd = row.get("frechet")
                label = f"{name}\nFD {fd:.1f}" if isinstance(fd, float) else name
                samples.append((label, sample(G, z, y, bf16=use_bf16(cfg.precision, device))))
        table = sweep.write_table("sweep", rows)
        figs: dict[str, Path] = {}
        grid = None
        if samples:
            grid = sweep.save_figure(figures.comparison_figure(samples, title="same seed and budget; FD: Fréchet "
                                                               "distance in the judge's feature space"), "comparison")
            figs["comparison"] = grid
        hists = {n: r.metrics["final"]["class_hist"] for n, (r, d) in trained.items()
                 if "class_hist" in r.metrics.get("final", {})}
        if hists:
            figs["class_histograms"] = sweep.save_figure(figures.class_histogram_figure(hists, [str(i) for i in range(10)]),
                                                         "class_histograms")
        if interpolate:
            figs.update(_interpolations(sweep, trained, seed, device))
        sweep.log_metrics(variants={n: VARIANTS[n].help for n in names})
        return SweepResult(root, rows, table, grid, figs, runs, {n: r.G for n, (r, _) in trained.items()})
    finally:
        sweep.close()


def interpolate_latent(z0: torch.Tensor, z1: torch.Tensor, steps: int = 10, *, spherical: bool = False) -> torch.Tensor:
    """``steps`` points from z0 to z1 (inclusive): linear, or slerp (keeps the Gaussian norm)."""
    t = torch.linspace(0, 1, steps).view(-1, 1)
    if not spherical:
        return (1 - t) * z0 + t * z1  # steps × nz
    omega = torch.acos(torch.clamp((z0 / z0.norm()) @ (z1 / z1.norm()), -1 + 1e-7, 1 - 1e-7))
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def _interpolations(sweep: Run, trained: dict, seed: int, device) -> dict[str, Path]:
    """Latent interpolation of the first DCGAN (D-Q5) and, for the first cDCGAN, z fixed across
    classes and z interpolated within a class (D-Q9: what z encodes)."""
    out = {}
    g = torch.Generator().manual_seed(seed + 11)
    dc = next(((r, d) for r, d in trained.values() if r.config.model == "dcgan"), None)
    if dc is not None:
        res, _ = dc
        rows = []
        for i in range(4):
            z0, z1 = torch.randn(2, res.config.nz, generator=g)
            zs = interpolate_latent(z0, z1, 10, spherical=True)
            rows.append((f"pair {i}", sample(res.G, zs, bf16=use_bf16(res.config.precision, device))))
        out["interpolation"] = sweep.save_figure(
            figures.comparison_figure(rows, title=f"{res.root.name}: slerp between two z (10 steps)"), "interpolation")
    cd = next(((r, d) for r, d in trained.values() if r.config.model == "cdcgan" and r.config.cond_d), None)
    if cd is not None:
        res, data = cd
        k = len(data.classes)
        z0, z1 = torch.randn(2, res.config.nz, generator=g)
        zs = interpolate_latent(z0, z1, 10, spherical=True)
        rows = [(f"y={data.classes[c]}", sample(res.G, zs, torch.full((10,), c), bf16=use_bf16(res.config.precision, device)))
                for c in range(min(k, 10))]
        out["cdcgan_z_interpolation"] = sweep.save_figure(
            figures.comparison_figure(rows, title="cDCGAN: the same z path for every class (z = style, y = digit)"),
            "cdcgan_z_interpolation")
    return out


# --------------------------------------------------------------------------- D-Q1 and D-Q9 measurements
def one_objective_study(data: GANData, *, steps: int, seed: int = 0, base: GANConfig | None = None,
                        judge=None, reference=None, samples: int = 500) -> list[dict]:
    """D-Q1: train only D (G frozen) or only G (D frozen at its init) for ``steps`` steps from the
    same start, next to both, and report mean D(x), D(G(z)) and the judge's distance of G's samples."""
    from cnnlab.data import gather_batches, index_batches
    from cnnlab.generate.judge import judge_metrics
    from cnnlab.generate.networks import build_gan
    from cnnlab.generate.steps import d_step, g_step
    from cnnlab.generate.train import gan_optimizer, to_gan_range

    cfg = base or GANConfig()
    rows = []
    for which in ("only D", "only G", "both"):
        torch.manual_seed(seed)
        G, D = build_gan("dcgan", nz=cfg.nz, ngf=cfg.ngf, ndf=cfg.ndf, nc=data.channels, size=cfg.size,
                         generator=torch.Generator().manual_seed(seed))
        opt_g, opt_d = gan_optimizer(G, cfg.lr_g, cfg, "cpu"), gan_optimizer(D, cfg.lr_d, cfg, "cpu")
        g = torch.Generator().manual_seed(seed)
        done = 0
        while done < steps:
            for (x,) in gather_batches(index_batches(len(data.train), cfg.batch_size, generator=g, drop_last=True,
                                                     shard=False),
                                       data.train):
                real = to_gan_range(x)
                fake = G(torch.randn(len(x), cfg.nz, generator=g))
                if which != "only G":
                    d_step(D, opt_d, real, fake)
                if which != "only D":
                    g_step(D, opt_g, fake, loss=cfg.g_loss)
                done += 1
                if done >= steps:
                    break
        with torch.no_grad():  # D's verdicts after training, on fresh batches, in train mode (as in training)
            real = to_gan_range(data.train[torch.randperm(len(data.train), generator=g)[:cfg.batch_size]])
            fake = G(torch.randn(cfg.batch_size, cfg.nz, generator=g))
            d_x, d_gz = D(real).mean().item(), D(fake).mean().item()
        row = {"trained": which, "steps": steps, "mean D(x)": d_x, "mean D(G(z))": d_gz}
        if judge is not None:
            z = torch.randn(samples, cfg.nz, generator=torch.Generator().manual_seed(seed + 1))
            m = judge_metrics(judge, sample(G, z), reference, digits=data.digits)
            row.update({k: m[k] for k in ("frechet", "confidence") if k in m})
        rows.append(row)
    return rows


@torch.no_grad()
def z_versus_y(G: torch.nn.Module, judge, *, nz: int, num_classes: int, n_z: int = 15, seed: int = 0,
               bf16: bool = False) -> dict:
    """D-Q9: how much of the variation of a cDCGAN's samples (in the judge's feature space) comes from
    y and how much from z. Generates n_z × num_classes images and splits the total variance of the
    features into a y part (variance of the per-class means), a z part (variance of the per-z
    means) and the interaction (a two-way ANOVA without replication)."""
    z = torch.randn(n_z, nz, generator=torch.Generator().manual_seed(seed)).repeat(num_classes, 1)
    y = torch.arange(num_classes).repeat_interleave(n_z)
    feats, probs = judge(sample(G, z, y, bf16=bf16))
    f = feats.double().view(num_classes, n_z, -1)  # class × z × D
    grand = f.mean((0, 1), keepdim=True)
    total = ((f - grand) ** 2).sum().item()
    by_y = n_z * ((f.mean(1, keepdim=True) - grand) ** 2).sum().item()
    by_z = num_classes * ((f.mean(0, keepdim=True) - grand) ** 2).sum().item()
    return {"share_y": by_y / total, "share_z": by_z / total, "share_interaction": 1 - (by_y + by_z) / total,
            "cond_acc": float((probs.argmax(1) == y).float().mean())}
