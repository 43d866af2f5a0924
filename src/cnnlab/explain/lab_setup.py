"""What Part B of the lab runs on: two networks, images, and the course's examples for them.

- **ImageNet** (the course): a user's ImageNet model (``--arch/--weights``) or SqueezeNet 1.1 when its
  torchvision weights are cached, plus VGG16 (or SqueezeNet) as the second network when cached, on
  the course's 25 images (``imagenet_val_25.npz`` under ``--data-root``), with the course's examples:
  quail → stingray; tarantula, gorilla, hourglass …; hay → snail.
- **embedded digits** (offline default): cnnlab's digit CNN trained on embedded MNIST, a second one
  of another seed as "another network"; saliency of digits, fooling 3 → 8 …, each digit visualised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.models import ModelBundle


@dataclass
class Setup:
    """What the section runs on: two networks, images, and the course's examples for them."""

    kind: str  # "imagenet" | "digits"
    a: ModelBundle
    a_name: str
    b: ModelBundle | None
    b_name: str
    images: torch.Tensor  # uint8 (N,C,H,W)
    labels: torch.Tensor
    show: list[int]  # images of the saliency figures
    fool_pairs: list[tuple[int, int]]  # (image, target) of the B-Q5 figure
    stats_images: list[int]  # images × random targets for the fooling statistics
    targets_per_image: int
    classes: list[int]  # B-Q8
    sweep_class: int  # B-Q9
    init_pairs: list[tuple[int, int]]  # B-Q10: (image, target)
    eps: float  # attacks, pixel units
    eps_l2: float
    notes: list[str] = field(default_factory=list)


def choose_setup(ctx) -> Setup:
    return _imagenet_setup(ctx) or _digit_setup(ctx)


def _imagenet_setup(ctx) -> Setup | None:
    from cnnlab.data import load_dataset
    from cnnlab.models import build_model
    from cnnlab.models.registry import weights_cached

    npz = Path(ctx.data_root) / "imagenet_val_25.npz" if ctx.data_root else None
    if npz is None or not npz.is_file():
        return None
    nets: list[tuple[str, str, tuple | None, tuple | None]] = []
    if ctx.arch:
        nets.append((ctx.arch, ctx.weights or "DEFAULT", ctx.mean, ctx.std))
    for arch in ("squeezenet1_1", "vgg16"):
        if weights_cached(arch) and all(arch != n[0] for n in nets):
            nets.append((arch, "DEFAULT", None, None))
    if not nets:
        return None
    bundles = [build_model(a, w, mean=m, std=s, device=ctx.device) for a, w, m, s in nets[:2]]
    names = [f"{a}" + (f" ({Path(w).name})" if w not in ("DEFAULT", "NONE") else "") for a, w, _, _ in nets[:2]]
    ds = load_dataset("imagenet-val25", "test", data_root=ctx.data_root)
    n = len(ds.images)
    a = bundles[0]
    # the course's examples, found by name (images in the npz's label map, targets in the model's classes);
    # the indices of the course's file and of torchvision's ImageNet classes are the fallbacks
    hay, quail, terrier = (_image_of(ds, nm, i) for nm, i in (("hay", 0), ("quail", 1), ("Border terrier", 3)))
    stingray, gorilla, snail = (_class_of(a, nm, k) for nm, k in (("stingray", 6), ("gorilla", 366), ("snail", 113)))
    course = [("tarantula", 76), ("tick", 78), ("Yorkshire terrier", 187), ("oboe", 683), ("gorilla", 366),
              ("hourglass", 604), ("snail", 113)]
    n_cls = 7 if not (ctx.quick or ctx.dry_run) else (2 if ctx.quick else 1)
    return Setup(kind="imagenet", a=a, a_name=names[0], b=bundles[1] if len(bundles) > 1 else None,
                 b_name=names[1] if len(names) > 1 else "", images=ds.images, labels=ds.labels,
                 show=list(range(min(n, ctx.budget(5, 5, 2)))),
                 fool_pairs=[(quail, stingray), (terrier, gorilla), (hay, snail)][:ctx.budget(3, 2, 1)],
                 stats_images=list(range(min(n, ctx.budget(25, 10, 2)))), targets_per_image=ctx.budget(3, 1, 1),
                 classes=[_class_of(a, nm, k) for nm, k in course][:n_cls], sweep_class=_class_of(a, "tarantula", 76),
                 init_pairs=[(hay, snail)], eps=2 / 255, eps_l2=0.5,
                 notes=[] if len(bundles) > 1 else ["No second ImageNet network is available (no cached VGG16 or "
                                                    "SqueezeNet 1.1 weights), so B-Q4 and B-Q11 are skipped."])


def _first_name(s: str) -> str:
    return str(s).split(",")[0].strip().lower()


def _image_of(ds, name: str, default: int) -> int:
    """The first image whose label is called ``name`` (first synonym) in the npz's label map."""
    classes = ds.classes or []
    for i, y in enumerate(ds.labels.tolist()):
        if 0 <= y < len(classes) and _first_name(classes[y]) == name.lower():
            return i
    return min(default, len(ds.labels) - 1)


def _class_of(bundle: ModelBundle, name: str, default: int) -> int:
    """The model's class called ``name`` (first synonym), else ``default``."""
    for k, c in enumerate(bundle.categories or []):
        if _first_name(c) == name.lower():
            return k
    return default


def _digit_net(seed: int, quick_train: bool) -> ModelBundle:
    """The embedded digit classifier of ``seed`` (cached), or, for a dry run without a cached one, a
    digitnet trained for one epoch on 500 digits (seconds, not minutes)."""
    from cnnlab.models.pretrained import digit_classifier, digit_classifier_cached

    if digit_classifier_cached(seed=seed) or not quick_train:
        return digit_classifier(seed=seed)
    from cnnlab.data import load_dataset
    from cnnlab.models import build_model
    from cnnlab.train import train_classifier

    train = load_dataset("mnist-embedded", "train")
    torch.manual_seed(seed)
    bundle = build_model("digitnet", "NONE")
    train_classifier(bundle.model, train.images[seed::8], train.labels[seed::8], preprocess=bundle.preprocess,
                     epochs=1, seed=seed, desc="digit classifier (dry run)")
    bundle.model.eval()
    return bundle


def _digit_setup(ctx) -> Setup:
    from cnnlab.data import load_dataset

    a, b = _digit_net(0, ctx.dry_run), _digit_net(1, ctx.dry_run)
    ds = load_dataset("mnist-embedded", "test")
    first = [int((ds.labels == d).nonzero()[0]) for d in range(10)]  # one image of each digit
    first_of = dict(enumerate(first))
    n_stats = ctx.budget(100, 30, 6)
    spread = torch.linspace(0, len(ds) - 1, n_stats).round().long().tolist()  # all classes (sorted by class)
    return Setup(kind="digits", a=a, a_name="digit CNN (seed 0)", b=b, b_name="digit CNN (seed 1)",
                 images=ds.images, labels=ds.labels, show=first if not ctx.dry_run else first[:4],
                 fool_pairs=[(first_of[3], 8), (first_of[1], 7), (first_of[4], 9), (first_of[0], 6)][:ctx.budget(4, 4, 2)],
                 stats_images=spread, targets_per_image=ctx.budget(3, 2, 1), classes=list(range(ctx.budget(10, 10, 3))),
                 sweep_class=3, init_pairs=[(first_of[4], 4), (first_of[4], 9)], eps=0.2, eps_l2=2.0)
