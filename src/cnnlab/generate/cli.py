"""``cnnlab gan train`` and ``cnnlab gan sweep``: Part D from the command line.

    cnnlab gan train --model dcgan --data-root ../shared/data --dataset mnist --out runs/dcgan
    cnnlab gan train --model cdcgan --dataset mnist-embedded --epochs 20 --out runs/cdcgan
    cnnlab gan sweep --variants default,saturating,nz10,size64 --epochs 5 --out runs/gan-sweep
    cnnlab gan train --preset strong --data-root ../shared/data --out runs/dcgan-strong
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def _add_settings(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    from cnnlab.generate.networks import COND_ARCHS, MODELS
    from cnnlab.generate.steps import D_LOSSES, G_LOSSES
    from cnnlab.generate.train import PRESETS, GANConfig, preset_help
    from cnnlab.precision import PRECISIONS

    d = GANConfig()
    g = p.add_argument_group("GAN settings (the course's defaults)")
    g.add_argument("--preset", default="course", choices=list(PRESETS),
                   help="course (default): the practical's settings; strong: " + preset_help("strong")
                        + " (the flags below override a preset)")
    if not sweep:
        g.add_argument("--model", default=d.model, choices=MODELS, help="dcgan, or the conditional cdcgan")
    g.add_argument("--dataset", default=None,
                   help="mnist (needs --data-root), mnist-embedded, digits, cifar10, imagefolder:PATH "
                        "(default: mnist when --data-root holds it, else mnist-embedded)")
    g.add_argument("--size", type=int, default=d.size, choices=(32, 64), help="image size (64: one more block; default 32)")
    g.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    # default None, as the settings below: a flag given wins over the preset, one not given keeps the preset's value
    g.add_argument("--batch-size", type=int, default=None, help=f"default {d.batch_size}")
    g.add_argument("--subset", type=int, default=None, help="train on the first N images only")
    if not sweep:
        g.add_argument("--nz", type=int, default=d.nz, help="latent size (default %(default)s)")
        g.add_argument("--ngf", type=int, default=None, help="generator width (default: dcgan 32, cdcgan 128)")
        g.add_argument("--ndf", type=int, default=None, help="discriminator width (default: dcgan 32, cdcgan 64)")
        # default None: a flag given overrides the preset, one not given leaves the preset's (or the course's) value
        g.add_argument("--lr-d", type=float, default=None, help=f"D's Adam learning rate (default {d.lr_d})")
        g.add_argument("--lr-g", type=float, default=None, help=f"G's Adam learning rate (default {d.lr_g})")
        g.add_argument("--beta1", type=float, default=None, help=f"Adam's beta1 for both (default {d.beta1})")
        g.add_argument("--beta2", type=float, default=None, help=f"Adam's beta2 for both (default {d.beta2})")
        g.add_argument("--g-loss", default=None, choices=G_LOSSES,
                       help=f"generator loss with --loss bce (D-Q3; default {d.g_loss})")
        g.add_argument("--init", default=None, choices=("dcgan", "pytorch"),
                       help=f"dcgan: N(0, 0.02); pytorch: the framework's default (default {d.init})")
        g.add_argument("--no-y-in-d", dest="cond_d", action="store_false", default=None,
                       help="cdcgan: remove y from D (D-Q7)")
        b = p.add_argument_group("beyond the course (each measured in docs/checks/part_d.md)")
        b.add_argument("--loss", default=None, choices=D_LOSSES, help=f"adversarial loss (default {d.loss})")
        b.add_argument("--spectral-norm", action=argparse.BooleanOptionalAction, default=None,
                       help="spectral normalisation of D's weights (its BatchNorms removed)")
        b.add_argument("--r1", type=float, default=None, help="R1 gradient penalty weight γ on real images (0: off)")
        b.add_argument("--r1-every", type=int, default=None, help=f"lazy R1: every k-th step (default {d.r1_every})")
        b.add_argument("--ema", type=float, default=None,
                       help="decay of the moving average of G's weights that samples come from (0: off; e.g. 0.999)")
        b.add_argument("--cond-arch", default=None, choices=COND_ARCHS,
                       help="cdcgan: concat (the course's one-hot branches) or projection "
                            "(class-conditional BatchNorm in G, projection discriminator)")
    g.add_argument("--sample-every", type=int, default=d.sample_every, help="steps between fixed-noise grids (0: ~20 per run)")
    g.add_argument("--eval-samples", type=int, default=d.eval_samples,
                   help="generated images judged after each epoch (default %(default)s)")
    g.add_argument("--judge", default=None, choices=("mnist", "mnist-embedded"),
                   help="dataset of the digit classifier that judges samples (default: mnist for mnist)")
    g.add_argument("--no-second-judge", dest="second_judge", action="store_false",
                   help="skip the second, independent judge (LeNet-5, seed 1) of the final samples")
    g.add_argument("--compile", action="store_true",
                   help="compile the training step's networks with torch.compile (on a GPU mode reduce-overhead: CUDA graphs, "
                        "for these small launch-bound networks; benchmarks/bench_gpu.py measures it). Off by default: "
                        "no GPU measurement has chosen it yet, and on a CPU it needs a C++ compiler")
    g.add_argument("--precision", default=d.precision, choices=PRECISIONS,
                   help="auto (default): bf16 autocast on CPUs with native bf16 (about 1.7x faster), else fp32")


def _dataset(args) -> str:
    from cnnlab.data.sources import has_mnist

    if args.dataset:
        return args.dataset
    if has_mnist(args.data_root):
        return "mnist"
    return "mnist-embedded"


def _base_config(args):
    from cnnlab.generate.train import GANConfig, config_from, preset_settings

    base = GANConfig(dataset=_dataset(args), size=args.size, epochs=args.epochs,
                     subset=args.subset, sample_every=args.sample_every, eval_samples=args.eval_samples,
                     judge=args.judge, precision=args.precision, compile=args.compile, second_judge=args.second_judge)
    given = {"batch_size": args.batch_size} if args.batch_size is not None else {}
    return config_from(base, **{**preset_settings(args.preset, getattr(args, "model", None) or base.model), **given})


# settings of `gan train` whose flags default to None (None: keep the preset's value)
_OVERRIDES = ("model", "nz", "ngf", "ndf", "lr_d", "lr_g", "beta1", "beta2", "g_loss", "init", "cond_d", "loss",
              "spectral_norm", "r1", "r1_every", "ema", "cond_arch")


def _dry(cfg, args):
    """--dry-run: the whole command on a tiny budget (256 images, 1 epoch, 200 judged samples)."""
    if args.dry_run:
        cfg = replace(cfg, subset=min(cfg.subset or 256, 256), epochs=1, eval_samples=200,
                      batch_size=min(cfg.batch_size, 64), judge_epochs=1)
    return cfg


def _cmd_train(args) -> int:
    from cnnlab.generate.train import config_from, train_gan
    from cnnlab.runs import seed_everything

    given = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    cfg = config_from(_base_config(args), **given)
    cfg = _dry(cfg, args)
    seed_everything(args.seed)
    res = train_gan(cfg, out=args.out, seed=args.seed, device=args.device, data_root=args.data_root,
                    download=args.download, resume=args.resume)
    f = res.metrics.get("final", {})
    f2, real = res.metrics.get("final_judge2", {}), res.metrics.get("real", {})
    second = f" (second judge, LeNet-5: {f2['frechet']:.2f})" if "frechet" in f2 else ""
    floor = f" [real digits: {real['frechet']:.2f}]" if "frechet" in real else ""
    ceiling = f" [real digits: {real['cond_acc']:.3f}]" if "cond_acc" in real else ""  # the judge's accuracy on them
    parts = [f"Fréchet distance {f['frechet']:.2f}{second}{floor}" if "frechet" in f else "",
             f"class entropy {f['class_entropy']:.2f}/{f['max_entropy']:.2f} bits" if "class_entropy" in f else "",
             f"confidence {f['confidence']:.3f}" if "confidence" in f else "",
             f"conditional accuracy {f['cond_acc']:.3f}{ceiling}" if "cond_acc" in f else ""]
    print(f"{cfg.model} on {cfg.dataset}: {', '.join(p for p in parts if p)}; "
          f"{res.metrics['images_per_s']:.0f} images/s")
    print(f"run folder: {res.root}")
    return 0


def _preset_per_model(preset: str, names: list[str], base) -> dict[str, dict]:
    """A variant that switches the model (``cdcgan``) gets the preset's settings for that model, as
    ``gan train --preset P --model M`` would: the base config holds the DCGAN's."""
    from cnnlab.generate.studies import VARIANTS, variant_config
    from cnnlab.generate.train import PRESET_MODELS

    per_model = PRESET_MODELS.get(preset, {})
    models = {n: variant_config(n, base).model for n in names if n in VARIANTS}
    return {n: per_model[m] for n, m in models.items() if m != base.model and m in per_model}


def _cmd_sweep(args) -> int:
    from cnnlab.generate.studies import VARIANTS, run_sweep
    from cnnlab.runs import seed_everything

    names = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants != "all" else list(VARIANTS)
    base = _dry(_base_config(args), args)
    seed_everything(args.seed)
    res = run_sweep(names, base=base, out=args.out, seed=args.seed, device=args.device, data_root=args.data_root,
                    download=args.download, resume=args.resume, extra=_preset_per_model(args.preset, names, base))
    print(f"{len(res.rows)} variants; table: {res.table}\ncomparison grid: {res.grid}")
    return 0


def add_commands(sub) -> None:
    from cnnlab.cli import add_common

    gan = sub.add_parser("gan", help="Part D: DCGAN / conditional DCGAN training, judging and studies")
    gsub = gan.add_subparsers(dest="gan_command", metavar="GAN_COMMAND")
    gan.set_defaults(func=lambda a: (gan.print_help(), 1)[1])

    t = gsub.add_parser("train", help="train a DCGAN or cDCGAN, judge its samples (run folder with figures)")
    add_common(t, out_default="runs/gan")
    _add_settings(t)
    t.set_defaults(func=_cmd_train, retain_freed_memory=True)

    from cnnlab.generate.studies import VARIANTS

    s = gsub.add_parser("sweep", help="train variants with the same seed and budget: one comparison grid + one table",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="variants:\n" + "\n".join(f"  {k:14s} {v.help}" for k, v in VARIANTS.items()))
    add_common(s, out_default="runs/gan-sweep")
    _add_settings(s, sweep=True)
    s.add_argument("--variants", default="default,narrow,wide,pytorch-init,saturating,nz10,nz1000",
                   help="comma-separated variant names (below), or all")
    s.set_defaults(func=_cmd_sweep, retain_freed_memory=True)
