"""Benchmark: cnnlab's DCGAN training against a course-notebook-style loop, in the same run.

The reference is the loop of the course notebook (and of pytorch/examples' dcgan): torchvision's
MNIST dataset with per-sample PIL transforms (Resize(32), ToTensor, Normalize(0.5, 0.5)) behind a
shuffling DataLoader, the same networks and settings (batch 128, nz 100, ngf = ndf = 32, N(0, 0.02),
Adam 2e-4 / 5e-4, betas (0.5, 0.999), BCE on D's Sigmoid output, non-saturating G loss), fp32.

cnnlab runs ``train_gan`` with its defaults (in-memory uint8 tensors resized once, index batches,
D frozen during the G step, bf16 autocast on CPUs with native bf16 (``--precision``), judge metrics
after every epoch, checkpoints, figures). Both generators are then judged the same way: Fréchet
distance in the digit classifier's feature space, 2,000 samples against the MNIST test set.

    python benchmarks/bench_generate_dcgan.py --data-root ../shared/data              # 5 epochs
    python benchmarks/bench_generate_dcgan.py --data-root ../shared/data --epochs 1 --subset 20000

Prints one table: wall time, images/s, Fréchet distance, and cnnlab's ratios to the reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn


def course_loop(*, data_root: str, epochs: int, subset: int | None, seed: int):
    """The notebook's training loop, as students run it, one epoch per ``next()``.
    Yields (G, seconds of that epoch, images seen in it)."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import MNIST

    from cnnlab.generate.networks import build_gan

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    transform = T.Compose([T.Resize(32), T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    dataset = MNIST(data_root, train=True, download=False, transform=transform)
    if subset is not None:  # the same images cnnlab's --subset picks
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:subset].sort().values
        dataset = Subset(dataset, keep.tolist())
    loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=0)
    netG, netD = build_gan("dcgan", generator=torch.Generator().manual_seed(seed))
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=5e-4, betas=(0.5, 0.999))
    for epoch in range(epochs):
        seen = 0
        for i, (data, _) in enumerate(loader):
            # (1) update D: maximise log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            real = data
            b = real.size(0)
            label = torch.full((b,), 1.0)
            output = netD(real).view(-1)
            errD_real = criterion(output, label)
            errD_real.backward()
            noise = torch.randn(b, 100, 1, 1)
            fake = netG(noise)
            label.fill_(0.0)
            output = netD(fake.detach()).view(-1)
            errD_fake = criterion(output, label)
            errD_fake.backward()
            optD.step()
            # (2) update G: maximise log(D(G(z)))
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake).view(-1)
            errG = criterion(output, label)
            errG.backward()
            optG.step()
            seen += b
            if i % 100 == 0:
                print(f"  course loop [{epoch + 1}/{epochs}][{i}/{len(loader)}] loss_D {(errD_real + errD_fake).item():.3f} "
                      f"loss_G {errG.item():.3f}", flush=True)
        rng = torch.get_rng_state()  # cnnlab runs between our epochs: keep this loop's own global RNG stream
        yield netG, time.perf_counter() - t0, seen
        torch.set_rng_state(rng)
        t0 = time.perf_counter()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--subset", type=int, default=None, help="train both on the same N MNIST images")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both (the course figure: one core)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="cnnlab's precision")
    p.add_argument("--also-fp32", action="store_true", help="add a cnnlab fp32 row (what bf16 contributes)")
    p.add_argument("--eval-samples", type=int, default=2000)
    p.add_argument("--eval-sets", type=int, default=5, help="noise sets the FD is averaged over")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for cnnlab's run folders (default: a temporary one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from cnnlab.errors import CnnlabError
    from cnnlab.generate.judge import judge_metrics, load_judge, real_reference
    from cnnlab.generate.train import GANConfig, load_gan_data, sample, train_gan

    if not (Path(args.data_root) / "MNIST" / "raw").is_dir():
        print(f"error: MNIST not found under {args.data_root}/MNIST/raw; pass --data-root", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {args.threads} thread(s), epochs {args.epochs}, subset {args.subset or 'all'}")
    judge = load_judge("mnist", data_root=args.data_root)  # cached; trained once on the full MNIST
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-gan-"))
    data = load_gan_data("mnist", size=32, data_root=args.data_root)
    ref_feats = real_reference(judge, data.test)
    # FD of 2,000 samples moves by several points with the noise drawn: average over a few noise sets
    eval_zs = [torch.randn(args.eval_samples, 100, generator=torch.Generator().manual_seed(1000 * args.seed + k + 1))
               for k in range(args.eval_sets)]

    def fd(G) -> tuple[float, float]:
        values = torch.tensor([judge_metrics(judge, sample(G, z), ref_feats)["frechet"] for z in eval_zs])
        return float(values.mean()), float(values.std()) if len(values) > 1 else 0.0

    # The two loops alternate epoch by epoch, so that both see the same load on a shared machine;
    # cnnlab continues with --resume (exact on CPU), writing its figures only at the end.
    precisions = [args.precision] + (["fp32"] if args.also_fp32 and args.precision != "fp32" else [])
    totals = {"course": [0.0, 0.0, 0]} | {p: [0.0, 0.0, 0] for p in precisions}  # wall, train, images
    results = {}
    course = course_loop(data_root=args.data_root, epochs=args.epochs, subset=args.subset, seed=args.seed)
    for epoch in range(1, args.epochs + 1):
        print(f"epoch {epoch}: course-notebook loop (torchvision MNIST + per-sample transforms + DataLoader, fp32)",
              flush=True)
        G_ref, sec, seen = next(course)
        totals["course"][0] += sec
        totals["course"][1] += sec
        totals["course"][2] += seen
        for prec in precisions:
            print(f"epoch {epoch}: cnnlab train_gan (precision {prec})", flush=True)
            cfg = GANConfig(dataset="mnist", epochs=epoch, subset=args.subset, precision=prec, judge="mnist",
                            eval_samples=args.eval_samples)
            t0 = time.perf_counter()
            try:
                res = train_gan(cfg, out=out / f"cnnlab-{prec}", seed=args.seed, device="cpu", data_root=args.data_root,
                                judge=judge, resume=epoch > 1, figures=epoch == args.epochs)
            except CnnlabError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            totals[prec][0] += time.perf_counter() - t0
            totals[prec][1] += res.metrics["train_seconds"]
            totals[prec][2] += res.metrics["images_per_s"] * res.metrics["train_seconds"]
            results[prec] = res
    torch.save(G_ref.state_dict(), out / "course_G.pt")  # for judging again later
    rows = [{"loop": "course notebook (fp32)", "wall_s": totals["course"][0], "train_s": totals["course"][1],
             "images_per_s": totals["course"][2] / totals["course"][1], "frechet": fd(G_ref)}]
    for prec in precisions:
        wall, train, images = totals[prec]
        rows.append({"loop": f"cnnlab ({results[prec].metrics['precision']})", "wall_s": wall, "train_s": train,
                     "images_per_s": images / train, "frechet": fd(results[prec].G)})
    ref = rows[0]
    print()
    print(f"{'loop':26s} {'wall s':>8s} {'train s':>8s} {'images/s':>9s} {'FD (mean ± sd)':>15s} {'wall ratio':>10s} "
          f"{'speed-up':>8s} {'FD ratio':>8s}")
    for r in rows:
        (m, sd), ref_m = r["frechet"], ref["frechet"][0]
        print(f"{r['loop']:26s} {r['wall_s']:8.1f} {r['train_s']:8.1f} {r['images_per_s']:9.0f} {m:8.1f} ± {sd:4.1f} "
              f"{r['wall_s'] / ref['wall_s']:10.2f} {r['images_per_s'] / ref['images_per_s']:8.2f} {m / ref_m:8.2f}")
    print("\nThe loops alternate epoch by epoch (cnnlab resumes from its checkpoint). wall s: everything (cnnlab's "
          "includes loading/resizing MNIST once, judging after every epoch, checkpoints, resuming and the figures); "
          "train s: training steps only. FD: Fréchet distance in the digit classifier's "
          f"features, {args.eval_samples} samples vs the MNIST test set, mean ± sd over {args.eval_sets} noise sets "
          "(lower is better; one training seed: rerun with --seed for the spread between trainings). Goal: wall ratio <= 0.5 at "
          "FD ratio <= 1.")
    print(f"cnnlab run folders: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
