"""The model registry: every torchvision classification model by name, plus cnnlab's own networks.

``build_model(arch, weights=...)`` returns a :class:`ModelBundle`: the network in eval mode together
with the preprocessing that its weights expect (mean/std, input size, channels) and its class names,
so the two never get separated.

``weights`` is one of:
* ``"DEFAULT"`` or a torchvision enum name (``"IMAGENET1K_V1"``): torchvision's weights, downloaded
  to the torch cache when online; their ImageNet mean/std and categories come along;
* ``"NONE"``: random initialisation;
* a path to a ``.pth`` state dict, loaded with ``weights_only=True``; normalisation is given by the
  user (``mean``/``std``; e.g. 0.5/0.5 for the shared MobileNetV2).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelBundle:
    model: nn.Module
    arch: str
    weights: str  # "NONE", a torchvision enum name, or a file path
    weights_id: str  # stable identity for caches: enum name or sha256 prefix of the file
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    in_channels: int = 3
    categories: list[str] | None = None
    extra: dict = field(default_factory=dict)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0,1] float) B×C×H×W → the normalised float input this model expects."""
        from cnnlab.data.transforms import to_float

        return to_float(images, size=self.input_size, channels=self.in_channels, mean=self.mean, std=self.std)

    @property
    def pixel_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (low, high) of valid pixels [0,1] in normalised space, shape (1,C,1,1) each."""
        m = torch.tensor(self.mean).view(1, -1, 1, 1)
        s = torch.tensor(self.std).view(1, -1, 1, 1)
        return (0 - m) / s, (1 - m) / s

    def to(self, device) -> "ModelBundle":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")


# --------------------------------------------------------------------------- cnnlab's own networks
@dataclass
class OwnModel:
    builder: Callable[..., nn.Module]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    in_channels: int
    categories: list[str] | None
    help: str


OWN_MODELS: dict[str, OwnModel] = {}


def register_model(name: str, *, mean: Sequence[float], std: Sequence[float], input_size: int, in_channels: int,
                   categories: list[str] | None = None, help: str = ""):
    """Decorator: register a builder ``f(num_classes=...) -> nn.Module`` under ``name``."""

    def deco(builder):
        OWN_MODELS[name] = OwnModel(builder, tuple(mean), tuple(std), input_size, in_channels, categories, help)
        return builder

    return deco


# Modules that register networks when imported (a part that is not built yet is skipped).
OWN_MODEL_MODULES = ("cnnlab.models.small", "cnnlab.adapt.networks", "cnnlab.generate.networks")


def _load_own_models() -> None:
    import importlib

    for mod in OWN_MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if not (e.name and mod.startswith(e.name)):
                raise


def weights_cached(arch: str, weights: str = "DEFAULT") -> bool:
    """True when torchvision's ``weights`` for ``arch`` are already in the torch hub cache (no download needed)."""
    import torchvision.models as tvm

    try:
        enum = tvm.get_model_weights(arch)
        w = enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights]
    except (ValueError, KeyError):
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name).is_file()


def torchvision_classifiers() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def available_models() -> list[str]:
    _load_own_models()
    return sorted(OWN_MODELS) + torchvision_classifiers()


# --------------------------------------------------------------------------- weights files
def file_sha(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` with ``weights_only=True``; unwraps ``{"state_dict": ...}``/``{"model": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"--weights {path}: file not found; give a .pth state dict, DEFAULT or NONE")
    if path.stat().st_size == 0:
        raise CnnlabError(f"--weights {path}: the file is empty (0 bytes); save a state dict with "
                          "torch.save(model.state_dict(), path)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: stderr keeps one clear line
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, zip errors, unsafe globals: all mean "not a plain state dict"
        text = str(e)
        if "WeightsUnpickler error:" in text:  # torch's advice (weights_only=False) is not ours to give
            text = "the safe loader refused it: " + text.split("WeightsUnpickler error:", 1)[1].strip()
        msg = (text.splitlines() or [""])[0][:200]  # some errors (EOFError) have no message
        raise CnnlabError(f"--weights {path}: not a loadable PyTorch state dict ({type(e).__name__}: {msg}); "
                          "save one with torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CnnlabError(f"--weights {path}: the file holds a {type(obj).__name__}, not a state dict of tensors; "
                          "save one with torch.save(model.state_dict(), path)")
    return obj


def _apply_state_dict(model: nn.Module, sd: dict, arch: str, path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shape:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shape:
            detail.append(f"{len(shape)} shape mismatches (e.g. {'; '.join(shape[:2])})")
        raise CnnlabError(f"--weights {path} does not fit --arch {arch}: {'; '.join(detail)}. "
                          "Pick the architecture the file was saved from (or --num-classes for a different head)")
    model.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------- the one builder
def build_model(arch: str, weights: str | os.PathLike = "DEFAULT", *, num_classes: int | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                input_size: int | None = None, device: torch.device | str | None = None) -> ModelBundle:
    """Build ``arch`` with ``weights`` and return it (eval mode) with its preprocessing."""
    _load_own_models()
    weights = str(weights)
    if arch in OWN_MODELS:
        bundle = _build_own(arch, weights, num_classes, mean, std, input_size)
    elif arch in torchvision_classifiers():
        bundle = _build_torchvision(arch, weights, num_classes, mean, std, input_size)
    else:
        import difflib

        close = difflib.get_close_matches(arch, available_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise CnnlabError(f"--arch {arch!r} is not a known model.{hint} `cnnlab models` lists all of them")
    bundle.model.eval()
    if device is not None:
        bundle.model.to(device)
    return bundle


def random_weights_id(model: nn.Module) -> str:
    """The identity of randomly initialised weights: a digest of their values. Every random network is
    "NONE", but two of them (another seed, another init) are different networks, and caches keyed
    on the weights (extracted features) must tell them apart."""
    h = hashlib.blake2b(digest_size=10)
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "NONE-" + h.hexdigest()


def _build_own(arch, weights, num_classes, mean, std, input_size) -> ModelBundle:
    spec = OWN_MODELS[arch]
    model = spec.builder(num_classes=num_classes or len(spec.categories or []) or 10)
    if weights.upper() == "DEFAULT":
        raise CnnlabError(f"--arch {arch} has no downloadable weights; use --weights NONE (train it) or a .pth file")
    if weights.upper() != "NONE":
        _apply_state_dict(model, load_state_dict_file(weights), arch, weights)
        wid = "file-" + file_sha(weights)
    else:
        wid = random_weights_id(model)
    return ModelBundle(model, arch, weights, wid, tuple(mean or spec.mean), tuple(std or spec.std),
                       input_size or spec.input_size, spec.in_channels, spec.categories)


def _build_torchvision(arch, weights, num_classes, mean, std, input_size) -> ModelBundle:
    import torchvision.models as tvm

    enum = tvm.get_model_weights(arch)
    meta_categories = list(enum.DEFAULT.meta.get("categories") or []) or None
    if weights.upper() == "NONE":
        model = tvm.get_model(arch, weights=None, num_classes=num_classes or 1000)
        cats = meta_categories if (num_classes or 1000) == 1000 else None
        return ModelBundle(model, arch, "NONE", random_weights_id(model), tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD),
                           input_size or 224, 3, cats)
    if weights.upper() == "DEFAULT" or weights in enum.__members__:
        w = enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights]
        try:
            model = tvm.get_model(arch, weights=w)
        except Exception as e:  # no network, proxy refusal, corrupted cache
            raise CnnlabError(
                f"--weights {weights} for {arch}: could not load {w} ({type(e).__name__}: {str(e)[:120]}). "
                f"Offline? Put the file {Path(w.url).name} in {torch.hub.get_dir()}/checkpoints, or pass "
                "--weights path/to/file.pth (with --mean/--std)") from None
        if num_classes and num_classes != len(w.meta["categories"]):
            replace_head(model, num_classes)
        tr = w.transforms()
        return ModelBundle(model, arch, str(w).split(".")[-1], f"tv-{w}", tuple(mean or tr.mean), tuple(std or tr.std),
                           input_size or int(tr.crop_size[0]), 3, list(w.meta["categories"]) if not num_classes else None)
    if not Path(weights).exists() and not any(sep in weights for sep in "/\\."):
        raise CnnlabError(f"--weights {weights!r}: not DEFAULT, NONE, a file, or one of {arch}'s enums "
                          f"({', '.join(enum.__members__)})")
    sd = load_state_dict_file(weights)
    n_out = num_classes or _infer_num_classes(sd) or 1000
    model = tvm.get_model(arch, weights=None, num_classes=n_out)
    _apply_state_dict(model, sd, arch, weights)
    if mean is None:
        log.warning("--weights %s: no --mean/--std given; using ImageNet's. Pass the normalisation the file was trained with", weights)
    cats = meta_categories if n_out == 1000 else None
    return ModelBundle(model, arch, str(weights), "file-" + file_sha(weights), tuple(mean or IMAGENET_MEAN),
                       tuple(std or IMAGENET_STD), input_size or 224, 3, cats)


def _infer_num_classes(sd: dict) -> int | None:
    """The output size of the last 2-d weight in the file (the classifier head), if any."""
    mats = [v for k, v in sd.items() if k.endswith("weight") and v.dim() == 2]
    return int(mats[-1].shape[0]) if mats else None


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the last ``nn.Linear`` (or SqueezeNet's final 1×1 conv) for a fresh one with ``num_classes`` outputs."""
    last_name, last = None, None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            last_name, last = name, m
    if last_name is None:
        raise CnnlabError("model has no Linear or Conv2d layer to replace as a classification head")
    if isinstance(last, nn.Linear):
        new = nn.Linear(last.in_features, num_classes)
    else:
        new = nn.Conv2d(last.in_channels, num_classes, kernel_size=last.kernel_size, stride=last.stride)
    parent = model.get_submodule(last_name.rsplit(".", 1)[0]) if "." in last_name else model
    setattr(parent, last_name.rsplit(".", 1)[-1], new)
    return model
