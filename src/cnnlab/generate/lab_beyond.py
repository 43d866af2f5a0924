"""Part D of ``cnnlab lab``, beyond the course: ``--preset strong`` next to the course's DCGAN and cDCGAN.

The strong preset (:data:`cnnlab.generate.train.PRESETS`) is trained with the same seed, data and
budget as the course's runs of the sweep; in the full and quick labs the DCGANs also run with two more
seeds, so the comparison rests on seed means (:func:`cnnlab.report.claims.compare_seed_means`). Both judges
score every run: cnnlab's digitnet and the independent LeNet-5 (another architecture, another seed).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from cnnlab.generate import figures
from cnnlab.generate.train import preset_help, sample, train_gan
from cnnlab.report import Section, num
from cnnlab.report.claims import compare_relative, compare_seed_means

JUDGES = {"final": "digitnet (seed 0)", "final_judge2": "LeNet-5 (seed 1)"}
LABELS = {"default": "the course's DCGAN", "strong": "DCGAN, --preset strong", "cdcgan": "the course's cDCGAN",
          "cdcgan-strong": "cDCGAN, --preset strong"}
COND_WORDS = {"concat": "y as the course's concatenated one-hot inputs",
              "projection": "y through class-conditional BatchNorm in G and a projection D"}


def seed_metrics(ctx, name: str, cfg, first: dict, root: Path, *, data, judge, data_root, seeds: int) -> list[dict]:
    """metrics.json of ``name`` for the lab's seed (``first``, from the sweep) and ``seeds − 1`` more,
    trained into ``root/seeds/<name>-seed<s>`` (the default's extra seeds are already there)."""
    out = [first]
    for s in range(ctx.seed + 1, ctx.seed + seeds):
        res = train_gan(cfg, out=root / "seeds" / f"{name}-seed{s}", seed=s, device=ctx.device, data_root=data_root,
                        resume=ctx.resume, data=data, judge=judge, command=f"lab D {name} seed", figures=False)
        out.append(res.metrics)
    return out


def _fds(runs: list[dict], key: str) -> list[float]:
    return [float(m[key]["frechet"]) for m in runs if "frechet" in m.get(key, {})]


def _mean_sd(v: list[float]) -> str:
    if not v:
        return "n/a"
    return f"{statistics.fmean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def strong_text(course: dict[str, list[float]], strong: dict[str, list[float]], margin_rel: float) -> str:
    """Whether the strong preset lowered the FD, judge by judge (seed means when ≥ 2 seeds, else one run
    each against ``margin_rel``), and whether the judges agree."""
    verdicts = {}
    for key, name in JUDGES.items():
        a, b = strong.get(key, []), course.get(key, [])
        c = (compare_seed_means(a, b) if len(a) >= 2 and len(b) >= 2
             else compare_relative(a[0] if a else None, b[0] if b else None, margin_rel))
        verdicts[name] = c
    signs = {c.sign for c in verdicts.values()}
    parts = "; ".join(f"{n}: {_mean_sd(strong.get(k, []))} against {_mean_sd(course.get(k, []))} "
                      f"(margin ±{verdicts[n].margin:.1f}, {verdicts[n].basis})" for k, n in JUDGES.items())
    if signs == {-1}:
        head = "The strong preset gives digits closer to the real ones on both judges"
    elif signs == {1}:
        head = "The strong preset is worse than the course's settings on both judges at this budget"
    elif signs == {0}:
        head = "No clear difference between the strong preset and the course's settings at this budget, on either judge"
    else:
        head = ("The two judges disagree, so this run shows no gain that holds beyond one classifier: "
                + ", ".join(f"{n} says {c.says('worse', 'better', 'no clear difference')}" for n, c in verdicts.items()))
    return f"{head} (Fréchet distance, lower is better; {parts})."


def beyond_section(ctx, *, base, rows, metrics, sweep, data, judge, data_root, root, margin, widths,
                   seeds: int) -> Section | None:
    """D-beyond: the course's DCGAN (and cDCGAN) against the strong preset, grids side by side. ``seeds``:
    how many seeds the default DCGAN was trained with (its extra seeds in ``root/seeds/default-seed<s>``)."""
    if "strong" not in rows or "frechet" not in metrics.get("strong", {}).get("final", {}):
        return None
    from cnnlab.generate.studies import variant_config

    cfg = variant_config("strong", base)
    extra = [root / "seeds" / f"default-seed{s}" for s in range(ctx.seed + 1, ctx.seed + seeds)]
    runs = {"default": [metrics["default"]] + [_read(p) for p in extra],
            "strong": seed_metrics(ctx, "strong", cfg, metrics["strong"], root, data=data, judge=judge,
                                   data_root=data_root, seeds=seeds)}
    fds = {n: {k: _fds(r, k) for k in JUDGES} for n, r in runs.items()}
    steps = {n: metrics[n].get("steps") for n in ("default", "strong")}
    s = Section("D-beyond", "Beyond the course: the strong preset").text(
        f"`--preset strong` ({preset_help('strong')}) keeps the course's network sizes and its budget in epochs: "
        f"the same {base.epochs} epoch{'s' if base.epochs != 1 else ''} over the same digits ({steps['default']} steps "
        f"of batch {base.batch_size} for the course's settings, {steps['strong']} of batch {cfg.batch_size} for the "
        f"preset), {seeds} seed{'s' if seeds > 1 else ''} each. "
        + strong_text(fds["default"], fds["strong"], margin.rel)
        + " docs/checks/part_d.md compares the two on the full MNIST over 3 seeds, with their training times.")
    shown = ["default", "strong"] + (["cdcgan", "cdcgan-strong"] if {"cdcgan", "cdcgan-strong"} <= set(rows) else [])
    table = []
    for n in shown:
        m = metrics[n]
        f1 = fds[n] if n in fds else {k: _fds([m], k) for k in JUDGES}
        table.append({"variant": n, "seeds": len(f1["final"]), "FD digitnet": _mean_sd(f1["final"]),
                      "FD LeNet-5": _mean_sd(f1["final_judge2"]), "cond_acc": m.get("final", {}).get("cond_acc"),
                      "params G": m.get("params_G"), "params D": m.get("params_D")})
    floor1 = metrics["default"].get("real", {}).get("frechet")
    floor2 = metrics["default"].get("real_judge2", {}).get("frechet")
    s.table(table, caption=f"FD mean ± sd over seeds; real-data floor: digitnet {num(floor1, '.1f')}, LeNet-5 {num(floor2, '.1f')}")
    pairs = [(n, sweep.generators[n]) for n in shown if n in sweep.generators]
    if pairs:
        import torch

        grids = []
        for n, G in pairs:
            cond = n.startswith("cdcgan")
            z = torch.randn(64 if not cond else 60, base.nz, generator=torch.Generator().manual_seed(ctx.seed + 21))
            y = torch.arange(60) % 10 if cond else None
            fd = metrics[n].get("final", {}).get("frechet")
            grids.append((f"{LABELS[n]}\nFD {num(fd, '.1f')}", sample(G, z, y), 8 if not cond else 10))
        from cnnlab.runs import Run

        path = Run.open(sweep.root).save_figure(figures.side_by_side_figure(grids), "strong_vs_course")
        s.figure(path, "the course's settings (left of each pair) and the strong preset, the same noise")
    if "cdcgan-strong" in rows and "cdcgan" in rows:
        arch = COND_WORDS[variant_config("cdcgan-strong", base).cond_arch]
        s.text(f"The conditional models (widths ngf {widths['ngf']}, ndf {widths['ndf']}, one seed): conditional "
               f"accuracy {num(rows['cdcgan'].get('cond_acc'), '.3f')} with the course's settings, "
               f"{num(rows['cdcgan-strong'].get('cond_acc'), '.3f')} with the preset ({arch}); as many real "
               f"training digits score {num(metrics['cdcgan'].get('real', {}).get('cond_acc'), '.3f')} (the judge's "
               "own accuracy on them, the most a G that reproduces its digits would reach).")
    return s


def _read(path: Path) -> dict:
    from cnnlab.runs import Run

    return Run.open(path).metrics
