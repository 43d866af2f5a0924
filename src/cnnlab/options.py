"""Command-line options that several commands share, parsed one way: numbers lists (``--mean``,
``--C``), and the model flags ``--arch/--weights/--mean/--std``."""

from __future__ import annotations

import argparse

from cnnlab.errors import CnnlabError


def number(s: str) -> float:
    """A float, or a fraction like ``8/255``; ``argparse.ArgumentTypeError`` otherwise (so that it
    also serves as an argparse ``type=``)."""
    try:
        if "/" in s:
            a, b = s.split("/", 1)
            return float(a) / float(b)
        return float(s)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{s!r} is not a number (e.g. 0.03 or 8/255)") from None


def parse_floats(s: str | None, what: str, *, per_channel: bool = True) -> tuple[float, ...] | None:
    """``"0.5"`` or ``"0.485,0.456,0.406"`` (fractions allowed) → a tuple; None stays None. With
    ``per_channel``, one value is repeated for the three colour channels. A bad list is one clear
    ``CnnlabError`` that names the option ``what``."""
    if s is None:
        return None
    try:
        vals = tuple(number(x.strip()) for x in str(s).split(","))
    except argparse.ArgumentTypeError:
        raise CnnlabError(f"{what} {s!r}: expected comma-separated numbers, e.g. 0.5 or 0.485,0.456,0.406") from None
    return vals * 3 if per_channel and len(vals) == 1 else vals


def add_model_args(p: argparse.ArgumentParser, *, arch: str | None, weights: str | None, suffix: str = "",
                   what: str = "the model", input_size: bool = False) -> None:
    """``--arch{suffix} --weights{suffix} --mean{suffix} --std{suffix}`` (and ``--input-size``)."""
    arch_help = f"{what}: a name from `cnnlab models`" + (f" (default: {arch})" if arch else "")
    p.add_argument(f"--arch{suffix}", default=arch, help=arch_help)
    p.add_argument(f"--weights{suffix}", default=weights,
                   help="DEFAULT (torchvision's, downloaded when online), NONE (random), or a .pth state dict")
    p.add_argument(f"--mean{suffix}", default=None,
                   help="normalisation mean the weights file was trained with, e.g. 0.5 or 0.485,0.456,0.406")
    p.add_argument(f"--std{suffix}", default=None, help="normalisation std the weights file was trained with, e.g. 0.5")
    if input_size:
        p.add_argument("--input-size", type=int, default=None, help="input resolution (default: the weights' own, 224)")


def model_options(args: argparse.Namespace, suffix: str = "") -> dict:
    """The parsed model flags of ``add_model_args``: arch, weights, mean, std (tuples or None)."""
    key = suffix.replace("-", "_")
    return {"arch": getattr(args, f"arch{key}"), "weights": getattr(args, f"weights{key}"),
            "mean": parse_floats(getattr(args, f"mean{key}"), f"--mean{suffix}"),
            "std": parse_floats(getattr(args, f"std{key}"), f"--std{suffix}")}
