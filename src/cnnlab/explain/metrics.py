"""How big and how visible an adversarial change is, and whether it fools another network.

Per image: success, iterations to success, L2 and L∞ of the change in 0–255 pixel units, PSNR and
SSIM (scikit-image, on [0,1] pixels), the confidence in the target (or in the true class), and
whether the success survives saving the image as 8-bit pixels. :func:`summarize` aggregates a
table; :func:`transfer_matrix` asks whether images that fool model A also fool model B.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

from cnnlab.explain.attacks import AttackResult
from cnnlab.explain.inputs import class_name, normalised_to_pixels
from cnnlab.explain.saliency import predict_proba
from cnnlab.models import ModelBundle


def _hwc(p: torch.Tensor) -> np.ndarray:
    a = p.clamp(0, 1).double().numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two [0,1] images (H×W or H×W×C); skimage's 7×7 window, shrunk for tiny images."""
    from skimage.metrics import structural_similarity

    side = min(a.shape[:2])
    win = 7 if side >= 7 else side - (1 - side % 2)  # the largest odd window that fits
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=-1 if a.ndim == 3 else None, win_size=win))


def image_quality(original: torch.Tensor, changed: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) and SSIM between two [0,1] pixel images C×H×W (PSNR is inf when equal)."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _hwc(original), _hwc(changed)
    psnr = math.inf if np.array_equal(a, b) else float(peak_signal_noise_ratio(a, b, data_range=1.0))
    return {"psnr": psnr, "ssim": ssim(a, b)}


def attack_table(bundle: ModelBundle, result: AttackResult, *, image_ids=None) -> list[dict]:
    """One row per image of ``result`` (see the module doc)."""
    p0 = normalised_to_pixels(bundle, result.originals).clamp(0, 1)
    p1 = normalised_to_pixels(bundle, result.images).clamp(0, 1)
    d = (p1 - p0) * 255.0
    probs = result.logits.softmax(1)
    # does it still fool once written as an 8-bit image?
    q = predict_proba(bundle, (p1 * 255).round().to(torch.uint8)).argmax(1)
    goal = result.targets if result.targeted else result.labels
    q_ok = (q == goal) if result.targeted else (q != goal)
    rows = []
    for i in range(len(result)):
        y, pred = int(result.labels[i]), int(result.predictions[i])
        row = {"image": int(image_ids[i]) if image_ids is not None else i,
               "label": class_name(bundle, y), "pred": class_name(bundle, pred)}
        if result.targeted:
            t = int(result.targets[i])
            row |= {"target": class_name(bundle, t)}
        row |= {"success": bool(result.success[i]), "iterations": int(result.iterations[i]),
                "l2_255": float(d[i].flatten().norm()), "linf_255": float(d[i].abs().max()),
                **image_quality(p0[i], p1[i])}
        if result.targeted:
            row["p_target"] = float(probs[i, int(result.targets[i])])
        row["p_label"] = float(probs[i, y]) if y >= 0 else float("nan")
        row["success_uint8"] = bool(q_ok[i])
        rows.append(row)
    return rows


def summarize(rows: list[dict], name: str) -> dict:
    """One aggregate row: success rate, median iterations of the successes, mean sizes and quality."""
    ok = [r for r in rows if r["success"]]
    mean = lambda key, rs: float(np.mean([r[key] for r in rs])) if rs else float("nan")  # noqa: E731
    already = sum(r["success"] and r["iterations"] == 0 for r in rows)  # e.g. misclassified before any change
    out = {"attack": name, "n": len(rows), "success_rate": len(ok) / len(rows) if rows else float("nan"),
           "already": already,
           "median_iters": float(np.median([r["iterations"] for r in ok])) if ok else float("nan"),
           "l2_255": mean("l2_255", ok), "linf_255": mean("linf_255", ok),
           "psnr": float(np.mean([r["psnr"] for r in ok if math.isfinite(r["psnr"])] or [float("nan")])),
           "ssim": mean("ssim", ok)}
    if rows and "p_target" in rows[0]:
        out["p_target"] = mean("p_target", ok)
    out["uint8_success_rate"] = float(np.mean([r["success_uint8"] for r in rows])) if rows else float("nan")
    return out


def transfer_matrix(results: Mapping[str, tuple[ModelBundle, AttackResult]],
                    models: Mapping[str, ModelBundle]) -> list[dict]:
    """Rows: the model an attack was crafted on; columns: each model of ``models``, holding the
    fraction of the source's *successful* adversarial images that also fool it (targeted: predicted
    as the target; untargeted: not predicted as the label). ``clean`` columns give the same rate on
    the unattacked images, the baseline a transfer rate must beat."""
    rows = []
    for src, (bundle_a, res) in results.items():
        ok = res.success
        row = {"crafted on": src, "n_fooled": int(ok.sum())}
        pix = normalised_to_pixels(bundle_a, res.images[ok]).clamp(0, 1)
        pix0 = normalised_to_pixels(bundle_a, res.originals[ok]).clamp(0, 1)
        goal = (res.targets if res.targeted else res.labels)[ok]
        for name, bundle_b in models.items():
            if int(ok.sum()) == 0:
                row[name] = row[f"{name} clean"] = float("nan")
                continue
            for key, p in ((name, pix), (f"{name} clean", pix0)):
                pred = predict_proba(bundle_b, bundle_b.preprocess(p)).argmax(1)  # B's own resize + normalisation
                hit = pred == goal if res.targeted else pred != goal
                row[key] = float(hit.float().mean())
        rows.append(row)
    return rows


def top_share(m: torch.Tensor, frac: float = 0.05) -> float:
    """Share of a map's total mass in its ``frac`` largest pixels (1: all of it in a few pixels)."""
    v = m.flatten().double()
    k = max(1, int(round(frac * v.numel())))
    tot = float(v.sum())
    return float(v.topk(k).values.sum()) / tot if tot > 0 else float("nan")


def keep_salient(bundle: ModelBundle, images: torch.Tensor, maps: torch.Tensor, *, fraction: float = 0.2,
                 generator: torch.Generator | None = None) -> dict[str, float]:
    """A use of saliency beyond looking at it: keep only the ``fraction`` most salient pixels (the
    rest set to the dataset mean, 0 in normalised space) and check the prediction survives; the
    same with a random ``fraction`` of pixels is the baseline. Returns both agreement rates."""
    from cnnlab.explain.inputs import model_input

    x = model_input(bundle, images).cpu()
    g = generator or torch.Generator().manual_seed(0)
    n, hw = len(x), maps[0].numel()
    k = max(1, int(round(fraction * hw)))
    top = torch.zeros(n, hw, dtype=torch.bool)
    top.scatter_(1, maps.flatten(1).topk(k, dim=1).indices, True)
    rnd = torch.zeros(n, hw, dtype=torch.bool)
    rnd.scatter_(1, torch.rand(n, hw, generator=g).topk(k, dim=1).indices, True)
    pred = predict_proba(bundle, x).argmax(1)
    out = {}
    for name, keep in (("salient", top), ("random", rnd)):
        xm = x * keep.view(n, 1, *x.shape[-2:])
        out[f"kept_{name}"] = float((predict_proba(bundle, xm).argmax(1) == pred).float().mean())
    return out
