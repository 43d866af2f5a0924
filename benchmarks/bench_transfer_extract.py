"""Part A extraction speed, in one run, as ratios (these machines are noisy).

Compares, on the same synthetic JPEG folder and VGG16 (random weights: speed does not depend on them):
  * cnnlab: relu7 + relu6 + pool5 in ONE pass, batched, inference_mode, decoding included;
  * the course notebook's way: ImageFolder + PIL transforms per image, batch 8, one pass per layer
    (``nn.Sequential(*classifier[:-k])``);
  * a roofline: the machine's measured fp32 matmul rate / 31 GFLOP per VGG16 image (15.5 G mult-adds).
Also: the cost of a 3-layer × 7-C LinearSVC sweep relative to one extraction, and the peak memory of
extracting a large folder in streaming mode.

Usage: python benchmarks/bench_transfer_extract.py [--images 48] [--large 2000]
"""

from __future__ import annotations

import argparse
import resource
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


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def cnnlab_extract(folder: Path, layers, batch_size: int = 16, precision: str = "fp32") -> tuple[float, int]:
    from cnnlab.data.decode import scan_folder
    from cnnlab.data.imageset import FolderImageSet
    from cnnlab.models import build_model
    from cnnlab.transfer.features import extract_features

    bundle = build_model("vgg16", "NONE")
    files, labels, classes, _ = scan_folder(folder)
    ds = FolderImageSet(files, labels, classes, size=224, name="bench")  # every file, decoded inside the timing
    t0 = time.perf_counter()
    f = extract_features(bundle, ds, layers, batch_size=batch_size, use_cache=False, progress=None, num_workers=0,
                         precision=precision)
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
import resource, sys, time
from cnnlab.data.sources import load_image_folder
from cnnlab.models import build_model
from cnnlab.transfer.features import extract_features
folder, mode = sys.argv[1], sys.argv[2]
b = build_model("resnet18", "NONE")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ds = load_image_folder(folder, "train", size=224, in_memory=(mode == "memory"))
f = extract_features(b, ds, ["layer4", "pool"], batch_size=32, cache=sys.argv[3], progress=None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(f.labels), (peak - base) / 1024)
"""


def peak_memory(folder: Path, mode: str) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(folder), mode, cache], check=True,
                             capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=48, help="images in the speed folder")
    ap.add_argument("--large", type=int, default=2000, help="images in the peak-memory folder (0: skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    ap.add_argument("--raw-sweep", action="store_true", help="also time the sweep on the raw features (slow)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp) / "speed", args.images)
        gflops = matmul_gflops()
        roof = gflops / VGG16_GFLOP
        t_ours, n_ours = cnnlab_extract(folder, ["relu7", "relu6", "pool5"])
        t_ours1, _ = cnnlab_extract(folder, ["relu7"])
        t_bf16, _ = cnnlab_extract(folder, ["relu7", "relu6", "pool5"], precision="bf16")
        t_course, n_course = course_extract(folder)
        gflops = max(gflops, matmul_gflops())  # measured again after: the higher (less disturbed) rate
        ours_ips, course_ips = n_ours / t_ours, n_course / t_course
        roof = gflops / VGG16_GFLOP
        print(f"threads: {torch.get_num_threads()}  fp32 matmul: {gflops:.1f} GFLOP/s  -> VGG16 roofline {roof:.2f} img/s")
        print(f"{'method':52s} {'images/s':>9s} {'vs course':>10s} {'% roofline':>11s}")
        for name, ips in (("course notebook (batch 8, PIL per image, 1 pass/layer)", course_ips),
                          ("cnnlab, relu7+relu6+pool5 in one pass", ours_ips),
                          ("cnnlab, relu7 alone", n_ours / t_ours1),
                          ("cnnlab, 3 layers in one pass, --precision bf16", n_ours / t_bf16)):
            print(f"{name:52s} {ips:9.2f} {ips / course_ips:9.2f}x {100 * ips / roof:10.1f}%")
        n15 = 1500  # the course's 15 Scene train split
        sweep = svm_sweep_seconds(n15)
        sweep_raw = svm_sweep_seconds(n15, project=False) if args.raw_sweep else float("nan")
        one_extraction = (n15 + 2985) / ours_ips  # train + test, 3 layers in one pass
        print(f"3-layer (4096, 4096, 25088-d) x 7-C LinearSVC sweep with 5-fold CV on {n15} images: {sweep:.1f} s "
              f"(in span coordinates; on the raw features: {sweep_raw:.1f} s, {sweep_raw / sweep:.2f}x); one "
              f"extraction of 15 Scene (4485 images) at the rate above: {one_extraction:.0f} s; sweep + extraction = "
              f"{(sweep + one_extraction) / one_extraction:.2f}x one extraction (goal <= 1.2x; "
              f"the course's way: 3 extractions = 3.00x plus the sweep)")
        if args.large:
            big = make_folder(Path(tmp) / "large", args.large, classes=10, size=(320, 240))
            for mode in ("streaming", "memory"):
                n, mb = peak_memory(big, mode)
                print(f"peak extra RSS extracting {n} images (resnet18 layer4+pool), {mode:9s}: {mb:8.0f} MB")


if __name__ == "__main__":
    main()
