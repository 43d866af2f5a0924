"""Part A extraction speed, in one run, as ratios (these machines are noisy).

Compares, on the same synthetic JPEG folder and VGG16 (random weights: speed does not depend on them):
  * cnnlab: relu7 + relu6 + pool5 in ONE pass, batched, inference_mode, decoding included;
  * the course notebook's way: ImageFolder + PIL transforms per image, batch 8, one pass per layer
    (``nn.Sequential(*classifier[:-k])``);
  * a roofline: the machine's measured fp32 matmul rate / 31 GFLOP per VGG16 image (15.5 G mult-adds),
    at the best rate of the whole run (``% roofline``) and at the rate measured right before and after
    each run (``% local``: the machine's speed drifts within minutes).
Also: the cost of a 3-layer × 7-C LinearSVC sweep relative to one extraction, and the peak memory of
extracting a large folder in streaming mode.

Usage: python benchmarks/bench_transfer_extract.py [--images 48] [--large 4000] [--repeats 2] [--raw-sweep]

The ``--compile`` row is the steady rate once compiled; the compilation is printed apart and charged
to one 15 Scene-sized extraction.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

VGG16_GFLOP = 31.0  # 15.5 G multiply-adds per 224×224 image


def make_folder(root: Path, n: int, classes: int = 4, size=(300, 250)) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"c{i % classes}"
        d.mkdir(parents=True, exist_ok=True)
        # smooth random images compress like photos
        small = rng.integers(0, 255, (size[1] // 10, size[0] // 10, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(d / f"{i}.jpg", quality=90)
    return root


RATES: list[float] = []  # every matmul rate measured in this run


def matmul_gflops(n: int = 4096, reps: int = 5) -> float:
    """The machine's fp32 matmul rate: the best of ``reps`` products of two n×n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    RATES.append(2 * n**3 / best / 1e9)
    return RATES[-1]


LOCAL_SHARES: dict[str, float] = {}  # method → best share of the roofline measured next to it


def best_of(repeats: int, fn, name: str | None = None):
    """The fastest of ``repeats`` runs of ``fn() -> (seconds, n)``: other jobs only ever slow a run down.

    With a ``name``, the matmul rate is also measured right before and right after each run, and the
    run's share of the VGG16 roofline at the higher of those two rates is kept in ``LOCAL_SHARES``:
    this machine's speed drifts by 10–20% over minutes (neighbours, turbo), so a rate measured next to
    the run compares like with like, where one measured minutes apart adds that drift to the ratio."""
    runs = []
    for _ in range(repeats):
        before = matmul_gflops(reps=3) if name else 0.0
        t, n = fn()
        if name:
            rate = max(before, matmul_gflops(reps=3))
            LOCAL_SHARES[name] = max(LOCAL_SHARES.get(name, 0.0), n / t * VGG16_GFLOP / rate)
        runs.append((t, n))
    return min(runs)


def cnnlab_extract(folder: Path, layers, batch_size: int = 32, precision: str = "fp32",
                   compile: bool = False, bundle=None) -> tuple[float, int]:
    """cnnlab's extraction at its default batch size (``cnnlab transfer --batch-size 32``). ``compile``:
    ``--compile``, compiled at the first call with a ``bundle`` and reused by the next ones."""
    from cnnlab.data.decode import scan_folder
    from cnnlab.data.imageset import FolderImageSet
    from cnnlab.models import build_model
    from cnnlab.transfer.features import extract_features

    bundle = bundle or build_model("vgg16", "NONE")
    files, labels, classes, _ = scan_folder(folder)
    ds = FolderImageSet(files, labels, classes, size=224, name="bench")  # every file, decoded inside the timing
    t0 = time.perf_counter()
    f = extract_features(bundle, ds, layers, batch_size=batch_size, use_cache=False, progress=None, num_workers=0,
                         precision=precision, compile=compile)
    return time.perf_counter() - t0, len(f.labels)


def course_extract(folder: Path, cuts=(-2, -4, -7)) -> tuple[float, int]:
    """The course notebook: ImageFolder + per-image PIL transforms, batch 8, one pass per layer."""
    import torchvision
    from torchvision import transforms as T

    vgg = torchvision.models.vgg16(weights=None).eval()
    tf = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(str(folder), transform=tf)
    t0 = time.perf_counter()
    n = 0
    for cut in cuts:
        head = nn.Sequential(*list(vgg.classifier.children())[:cut])
        loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False)
        with torch.no_grad():
            for x, _ in loader:
                f = vgg.features(x)
                f = torch.flatten(vgg.avgpool(f), 1)
                feat = head(f)
                feat = feat / feat.norm(dim=1, keepdim=True)
                n += len(x)
    return time.perf_counter() - t0, n // len(cuts)


def svm_sweep_seconds(n: int, dims=(4096, 4096, 25088), Cs=(1e-3, 1e-2, .1, 1, 10, 100, 1000), classes=15,
                      project: bool = True) -> float:
    from cnnlab.transfer.classify import svm_study

    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    tr = {f"l{i}": (rng.normal(size=(n, d)).astype(np.float32) + y[:, None] * 0.05) for i, d in enumerate(dims)}
    tr = {k: v / np.linalg.norm(v, axis=1, keepdims=True) for k, v in tr.items()}
    te = {k: v[: n // 2] for k, v in tr.items()}
    t0 = time.perf_counter()
    svm_study(tr, te, y, y[: n // 2], [str(c) for c in range(classes)], Cs=Cs, cv=5, project=project)
    return time.perf_counter() - t0


PEAK_SCRIPT = """
import os, sys, threading, time
from cnnlab.data.imageset import FolderImageSet
from cnnlab.data.decode import scan_folder
from cnnlab.models import build_model
from cnnlab.transfer.features import extract_features
from cnnlab.allocator import retain_freed_memory

retain_freed_memory()  # as the cnnlab command does

def rss_mb():  # resident set size now (ru_maxrss would count importing torch's CUDA build)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

folder, mode, cache, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
b = build_model("resnet18", "NONE")
files, labels, classes, _ = scan_folder(folder)
base = rss_mb()
peak = [base]
def watch():
    while True:
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.01)
threading.Thread(target=watch, daemon=True).start()
ds = FolderImageSet(files[:n], labels[:n], classes, size=224, name="peak")
if mode == "memory":
    ds = ds.materialize()  # every decoded image held as uint8: what streaming avoids
f = extract_features(b, ds, ["layer4", "pool"], batch_size=32, cache=cache, progress=None)
time.sleep(0.05)
print(len(f.labels), peak[0] - base)
"""


def peak_memory(folder: Path, mode: str, n: int) -> tuple[int, float]:
    """Peak RSS growth (MB) of a fresh process while it extracts the first ``n`` images of ``folder``."""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(folder), mode, cache, str(n)], check=True,
                             capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48, help="images in the speed folder")
    ap.add_argument("--large", type=int, default=4000, help="images in the peak-memory folder (0: skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per method; the fastest counts")
    ap.add_argument("--memory-only", action="store_true", help="only the peak-memory measurement")
    ap.add_argument("--raw-sweep", action="store_true", help="also time the sweep on the raw features (slow)")
    args = ap.parse_args()
    from cnnlab.allocator import retain_freed_memory

    retain_freed_memory()  # what the cnnlab command does (the course's way, in this process, gets it too)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.memory_only:
            folder = make_folder(Path(tmp) / "speed", args.images)
            gflops = matmul_gflops()
            r = args.repeats
            names = {"course": "course notebook (batch 8, PIL per image, 1 pass/layer)",
                     "ours": "cnnlab, relu7+relu6+pool5 in one pass, fp32",
                     "ours1": "cnnlab, relu7 alone, fp32",
                     "comp": "cnnlab, 3 layers in one pass, fp32, --compile",
                     "bf16": "cnnlab, 3 layers in one pass, bf16 (default auto here)"}
            t_ours, n_ours = best_of(r, lambda: cnnlab_extract(folder, ["relu7", "relu6", "pool5"], precision="fp32"),
                                     names["ours"])
            t_ours1, _ = best_of(r, lambda: cnnlab_extract(folder, ["relu7"], precision="fp32"), names["ours1"])
            t_bf16, _ = best_of(r, lambda: cnnlab_extract(folder, ["relu7", "relu6", "pool5"], precision="bf16"),
                                names["bf16"])
            # --compile: the first call compiles (and extracts); the next calls reuse the compiled extractor
            from cnnlab.models import build_model

            vgg = build_model("vgg16", "NONE")
            t_first, _ = cnnlab_extract(folder, ["relu7", "relu6", "pool5"], precision="fp32", compile=True, bundle=vgg)
            t_comp, _ = best_of(r, lambda: cnnlab_extract(folder, ["relu7", "relu6", "pool5"], precision="fp32",
                                                          compile=True, bundle=vgg), names["comp"])
            compile_s = max(0.0, t_first - t_comp)
            t_course, n_course = best_of(r, lambda: course_extract(folder), names["course"])
            matmul_gflops()  # measured again after
            gflops = max(RATES)  # the best of the whole run: the least disturbed
            ours_ips, course_ips = n_ours / t_ours, n_course / t_course
            roof = gflops / VGG16_GFLOP
            print(f"threads: {torch.get_num_threads()}  fp32 matmul: {gflops:.1f} GFLOP/s  -> VGG16 roofline {roof:.2f} img/s")
            print(f"{'method':55s} {'images/s':>9s} {'vs course':>10s} {'% roofline':>11s} {'% local':>8s}")
            print("  (% roofline: at the best matmul rate of the whole run; % local: at the rate measured "
                  "right before/after the run itself)")
            for key, ips in (("course", course_ips), ("ours", ours_ips), ("ours1", n_ours / t_ours1),
                             ("comp", n_ours / t_comp), ("bf16", n_ours / t_bf16)):
                print(f"{names[key]:55s} {ips:9.2f} {ips / course_ips:9.2f}x {100 * ips / roof:10.1f}% "
                      f"{100 * LOCAL_SHARES[names[key]]:7.1f}%")
            one15 = 4485 / (n_ours / t_comp)
            print(f"--compile: one-off compilation {compile_s:.0f} s; over one fp32 extraction of 15 Scene (4485 images) "
                  f"that is {(one15 + compile_s) / (4485 / ours_ips):.2f}x eager's time, "
                  f"{100 * 4485 / (one15 + compile_s) / roof:.1f}% of the roofline with the compilation included")
            n15 = 1500  # the course's 15 Scene train split
            sweep = svm_sweep_seconds(n15)
            # the raw-feature reference on a reduced grid (the full one takes tens of minutes): pool5, two Cs
            small = dict(dims=(25088,), Cs=(1.0, 100.0))
            sweep_raw = svm_sweep_seconds(n15, project=False, **small) / svm_sweep_seconds(n15, **small) \
                if args.raw_sweep else float("nan")
            print(f"3-layer (4096, 4096, 25088-d) x 7-C LinearSVC sweep with 5-fold CV on {n15} images: {sweep:.1f} s "
                  f"(in span coordinates, folds in {min(5, os.cpu_count() or 1)} threads; on the raw 25088-d features, "
                  f"2 Cs: {sweep_raw:.1f}x slower)")
            for label, ips in (("fp32", ours_ips), ("bf16", n_ours / t_bf16)):
                one = (n15 + 2985) / ips  # one extraction of 15 Scene's train + test, 3 layers in one pass
                print(f"  vs one {label} extraction of 15 Scene (4485 images, {one:.0f} s at the rate above): "
                      f"extraction + sweep = {(sweep + one) / one:.2f}x one extraction (goal <= 1.2x; the course's "
                      "way: 3 extractions = 3.00x plus the sweep)")
        if args.large:
            big = make_folder(Path(tmp) / "large", args.large, classes=10, size=(320, 240))
            print("peak RSS growth while extracting resnet18 layer4+pool (a fresh process each):")
            for mode in ("streaming", "memory"):
                for n in (args.large // 4, args.large):
                    got, mb = peak_memory(big, mode, n)
                    print(f"  {mode:9s} {got:6d} images: +{mb:6.0f} MB")
            print("  streaming stays flat as the folder grows (chunks of 512 images, memmapped cache); holding the "
                  "decoded images grows by 0.15 MB per image")


if __name__ == "__main__":
    main()
