"""``cnnlab lab``: run the practical part by part and write one report.

Each part is a module with ``run_lab(ctx: LabContext) -> list[Section]``; it writes its own run
folder(s) under ``ctx.part_dir(...)`` and returns the sections answering its questions. The lab
stores them in ``<out>/<part>/sections.json`` and builds ``report.md``/``report.html`` from the run
folders. With ``--resume``, parts that already finished are not redone.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError
from cnnlab.lab_progress import LabProgress, plan_text
from cnnlab.report import Section, load_sections, save_sections, write_report
from cnnlab.runs import Run, library_versions, resolve_device

log = logging.getLogger("cnnlab")

# Part letter, folder name, module with run_lab(ctx). Absent modules are skipped (part not built yet).
LAB_PARTS = (
    ("A", "A-transfer", "cnnlab.transfer.lab"),
    ("B", "B-explain", "cnnlab.explain.lab"),
    ("C", "C-adapt", "cnnlab.adapt.lab"),
    ("D", "D-gan", "cnnlab.generate.lab"),
)


@dataclass(frozen=True)
class LabContext:
    """What every part of the lab is given: where to write, the seed and device, the data and model
    the user named, and the budget mode."""

    out: Path
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_root: Path | None = None
    download: bool = False
    quick: bool = False  # smaller budgets (minutes, not tens of minutes)
    dry_run: bool = False  # tiny budgets: a smoke test
    resume: bool = False
    arch: str | None = None  # user's ImageNet model for parts A/B (None: VGG16/SqueezeNet if weights exist)
    weights: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def part_dir(self, name: str) -> Path:
        p = self.out / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def budget(self, full, quick, dry):
        """Pick a setting by mode: the full lab, ``--quick`` or ``--dry-run``."""
        return dry if self.dry_run else quick if self.quick else full

    @property
    def course_budgets(self) -> bool:
        """The full lab on a GPU runs the course's budgets where the CPU lab shortens them (Part C's DANN
        epochs, Part D's cDCGAN widths): a GPU has the time."""
        return self.device.type == "cuda" and not (self.quick or self.dry_run)


def _load_part(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            return None
        raise


def run_lab(ctx: LabContext, parts: str = "ABCD") -> tuple[Path, Path]:
    run = Run.create(ctx.out, "lab", {k: v for k, v in vars(ctx).items() if k != "device"} | {"device": str(ctx.device)},
                     ctx.seed, resume=ctx.resume)
    timings = {}
    todo = [(letter, folder, mod) for letter, folder, mod in LAB_PARTS if letter in parts]
    mode = "dry" if ctx.dry_run else "quick" if ctx.quick else "full"
    modules = {letter: _load_part(module) for letter, _, module in todo}
    course = {letter for letter, mod in modules.items()  # a part may say whether it found the course's data
              if mod is not None and getattr(mod, "uses_course_data", lambda _: False)(ctx)}
    progress = LabProgress([letter for letter, _, _ in todo], mode, course=course)
    print(plan_text([letter for letter, _, _ in todo], mode, course), flush=True)
    logging.getLogger("cnnlab").addHandler(progress)  # every logged step of a part updates the progress line
    try:
        for i, (letter, folder, module) in enumerate(todo, 1):
            part_dir = ctx.out / folder
            done = part_dir / "sections.json"
            if ctx.resume and done.exists():
                progress.skip_part(letter)
                print(f"[{i}/{len(todo)}] Part {letter}: already done, kept ({done})")
                continue
            mod = modules[letter]
            if mod is None:
                progress.skip_part(letter)
                print(f"[{i}/{len(todo)}] Part {letter}: not available in this version, skipped")
                continue
            print(f"[{i}/{len(todo)}] Part {letter}: running …", flush=True)
            progress.start_part(letter)
            t0 = time.perf_counter()
            torch.manual_seed(ctx.seed)
            sections = mod.run_lab(ctx)
            timings[letter] = round(time.perf_counter() - t0, 1)
            save_sections(ctx.part_dir(folder), sections)
            progress.end_part(letter, timings[letter])
        run.log_metrics(part_seconds={**run.metrics.get("part_seconds", {}), **timings})  # resumed parts keep theirs
        return build_report(ctx.out)
    finally:
        logging.getLogger("cnnlab").removeHandler(progress)
        run.close()


def build_report(lab_root: str | Path) -> tuple[Path, Path]:
    """Rebuild the report from the part folders of a lab run."""
    lab_root = Path(lab_root)
    sections: list[Section] = []
    for _, folder, _ in LAB_PARTS:
        sections += load_sections(lab_root / folder)
    if not sections:
        raise CnnlabError(f"{lab_root} holds no finished part (no */sections.json); run `cnnlab lab --out {lab_root}` first")
    cfg = Run.open(lab_root).config if (lab_root / "config.json").exists() else {}
    v = cfg.get("versions") or library_versions()
    intro = (f"Built by cnnlab {v.get('cnnlab', '?')} from the run folders in this directory "
             f"(seed {cfg.get('seed', '?')}, torch {v.get('torch', '?')}, torchvision {v.get('torchvision', '?')}). "
             "Every number below is measured by the run; every figure is a file next to this report.")
    return write_report(lab_root, sections, title="cnnlab: the deep-learning-for-vision practical", intro=intro)


# --------------------------------------------------------------------------- CLI
def _cmd_lab(args) -> int:
    from cnnlab.options import model_options
    from cnnlab.runs import seed_everything

    seed_everything(args.seed)
    ctx = LabContext(out=Path(args.out), seed=args.seed, device=resolve_device(args.device),
                     data_root=Path(args.data_root) if args.data_root else None, download=args.download,
                     quick=args.quick, dry_run=args.dry_run, resume=args.resume, **model_options(args))
    parts = args.parts.upper()
    if bad := set(parts) - set("ABCD"):
        raise CnnlabError(f"--parts {args.parts!r}: unknown part(s) {''.join(sorted(bad))}; use letters from ABCD")
    md, html = run_lab(ctx, parts)
    print(f"report: {html}\n        {md}")
    return 0


def _cmd_report(args) -> int:
    md, html = build_report(args.run)
    print(f"report: {html}\n        {md}")
    return 0


def add_commands(sub) -> None:
    from cnnlab.cli import HelpFormatter, add_common
    from cnnlab.options import add_model_args

    p = sub.add_parser("lab", help="run the whole practical and write report.html + report.md",
                       formatter_class=HelpFormatter)
    add_common(p, out_default="runs/lab")
    p.add_argument("--quick", action="store_true", help="smaller budgets (a few minutes in all)")
    p.add_argument("--parts", default="ABCD", help="which parts to run, e.g. AB")
    add_model_args(p, arch=None, weights=None,
                   what="ImageNet model for parts A and B (default: VGG16/SqueezeNet when their weights are cached)")
    p.set_defaults(func=_cmd_lab, retain_freed_memory=True)
    r = sub.add_parser("report", help="rebuild report.html/report.md from a lab run folder")
    r.add_argument("run", help="the lab's --out folder")
    r.set_defaults(func=_cmd_report)
