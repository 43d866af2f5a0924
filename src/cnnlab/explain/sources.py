"""Models, classes and images named on ``cnnlab explain``'s command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError
from cnnlab.options import model_options


def _ints(s: str | None, what: str) -> list[int] | None:
    if not s:
        return None
    try:
        out = []
        for part in s.split(","):
            if "-" in part.strip()[1:]:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        return out
    except ValueError:
        raise CnnlabError(f"{what} {s!r}: expected integers like 0,3,7 or 0-4") from None


def class_index(bundle, s: str | int, what: str = "--target") -> int:
    """A class given as an index or a name of ``bundle.categories`` (case-insensitive, unique prefix)."""
    cats = bundle.categories or []
    s = str(s).strip()
    if s.lstrip("-").isdigit():
        k = int(s)
        n = len(cats) or None
        if k < 0 or (n and k >= n):
            raise CnnlabError(f"{what} {k}: {bundle.arch} has classes 0..{(n or 1) - 1}")
        return k
    low = [c.lower() for c in cats]
    if s.lower() in low:
        return low.index(s.lower())
    hits = [i for i, c in enumerate(low) if c.startswith(s.lower())]
    if len(hits) == 1:
        return hits[0]
    hint = f" (matches: {', '.join(cats[i] for i in hits[:5])})" if hits else ""
    raise CnnlabError(f"{what} {s!r} is not a class index or a unique class name of {bundle.arch}{hint}")


def load_bundle(args, suffix: str = "", *, seed: int = 0, device=None):
    """The bundle named by ``--arch{suffix}`` etc.; without an arch, the embedded digit classifier
    (``seed`` picks which of them: a second network is another seed)."""
    from cnnlab.models import build_model
    from cnnlab.models.pretrained import digit_classifier

    opts = model_options(args, suffix)
    arch, weights, mean, std = opts["arch"], opts["weights"], opts["mean"], opts["std"]
    if arch is None:
        if suffix and args.arch is not None:
            raise CnnlabError(f"--compare with --arch {args.arch}: name the second network with --arch{suffix} "
                              f"(and --weights{suffix}, --mean{suffix}, --std{suffix} for a weights file)")
        if weights is not None:
            raise CnnlabError(f"--weights{suffix} {weights} needs --arch{suffix} (the architecture the file was saved from)")
        return digit_classifier(seed=seed, device=device or "cpu")
    bundle = build_model(arch, weights or "DEFAULT", mean=mean, std=std, device=device)
    if mean is not None and len(mean) != bundle.in_channels:
        bundle.mean, bundle.std = tuple(mean[:bundle.in_channels]), tuple(std[:bundle.in_channels])
    return bundle


@dataclass
class Images:
    images: torch.Tensor  # uint8 (N,C,H,W)
    labels: torch.Tensor  # (N,), -1 when unknown
    ids: list[str]  # dataset index or file name, for tables and titles
    source: str


def load_images(args, bundle) -> Images:
    from cnnlab.data import load_dataset
    from cnnlab.data.decode import decode_image

    parts: list[Images] = []
    if args.dataset or not args.images:
        name = args.dataset or "mnist-embedded"
        ds = load_dataset(name, args.split, data_root=args.data_root, download=args.download, size=bundle.input_size)
        idx = _ints(args.indices, "--indices") or list(range(min(args.limit, len(ds))))
        if args.limit is not None and args.limit < 1:
            raise CnnlabError(f"--limit {args.limit}: must be at least 1")
        bad = [i for i in idx if not 0 <= i < len(ds)]
        if bad:
            flag = getattr(args, "indices_flag", "--indices")  # classviz: --init-index
            raise CnnlabError(f"{flag}: {bad[0]} is out of range for {name} ({len(ds)} images in split {args.split}; "
                              f"use 0..{len(ds) - 1})")
        sub = ds.subset(idx) if hasattr(ds, "subset") else ds.materialize().subset(idx)
        parts.append(Images(sub.images, sub.labels, [str(i) for i in idx], name))
    for f in args.images:
        path = Path(f)
        if not path.is_file():
            raise CnnlabError(f"image file {path} not found")
        try:
            img = decode_image(path, size=bundle.input_size, channels=bundle.in_channels)
        except ValueError as e:
            raise CnnlabError(f"image file {path}: {e}") from None
        parts.append(Images(img[None], torch.tensor([-1]), [path.name], "files"))
    imgs = [p.images for p in parts]
    shapes = {tuple(i.shape[1:]) for i in imgs}
    if len(shapes) > 1:  # dataset images at native size + files at input size: bring all to the input size
        from cnnlab.data.transforms import to_float

        imgs = [(to_float(i, size=bundle.input_size, channels=bundle.in_channels) * 255).round().to(torch.uint8)
                for i in imgs]
    return Images(torch.cat(imgs), torch.cat([p.labels for p in parts]), sum((p.ids for p in parts), []),
                  "+".join(p.source for p in parts))
