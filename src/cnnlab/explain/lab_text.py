"""Part B's sentences from numbers: each reads measured values against a stated cut-off or a 95%
confidence interval, prints the rule it used, and is tested with both outcomes
(tests/test_report_claims.py). ``explain/lab.py`` builds the sections and calls these."""

from __future__ import annotations

from cnnlab.report import pct
from cnnlab.report.claims import compare_accuracies

def _trend(rs, key):
    return f"{rs[0][key]:.3g} → {rs[-1][key]:.3g}" if rs else "n/a"


def _direction(rs, key, up: str, down: str, flat: str, tol: float | None = None):
    tol = FLAT if tol is None else tol
    if len(rs) < 2:
        return flat
    a0, a1 = rs[0][key], rs[-1][key]
    return up if a1 > a0 * (1 + tol) + 1e-9 else down if a1 < a0 * (1 - tol) - 1e-9 else flat


P_REACHED = 0.5  # B-Q8/B-Q9: a visualisation reaches its class when the network's confidence is above this
FLAT = 0.05  # B-Q9 trends: a change under 5% of the first value counts as none
RESEMBLES = 0.5  # B-Q8 digits: the images carry the class's shape when at least this share resembles its own class


def classviz_text(hits: int, n: int, mean_conf: float, iters: int, *, own_corr: float | None = None,
                  best: int | None = None) -> str:
    """B-Q8: how many visualisations the network takes for their class and, for digits, whether they
    resemble the class's average test digit."""
    text = (f"{hits} of {n} visualisations are classified as their class (mean confidence {mean_conf:.2f})"
            + (": the ascent finds, for every class, an input the network is sure about. " if hits == n
               else f" after {iters} iterations. "))
    if best is None:
        return text + ("What to look for in the figure: repeated textures and parts of the class spread over the "
                       "whole frame rather than one coherent object, since the network scores local evidence, not a "
                       "layout.")
    return text + (f"Do they look like the class? Each visualisation's correlation with the average test digit of its "
                   f"class is {own_corr:.2f} on average, and the average digit it resembles most is its own class for "
                   f"{best} of {n} classes: "
                   + ("the images carry the class's shape, though as fragments and textures, not as a clean digit"
                      if best >= RESEMBLES * n else
                      "the network is convinced by images that do not look like the class: it responds to local "
                      "evidence, not to the digit as a human sees it")
                   + f" (cut-off: {RESEMBLES:.0%} of the classes).")


def sweep_text(srows: list[dict], iters: int) -> str:
    """B-Q9: what iterations, learning rate and λ change, read from the sweep's rows."""
    it, lr, l2 = ([r for r in srows if r["varied"] == k] for k in ("iterations", "learning_rate", "l2_reg"))
    parts = [f"Iterations ({', '.join(r['setting'] for r in it)}): confidence {_trend(it, 'p_target')}, distance "
             f"from the mean {_trend(it, 'rms_from_mean')}, neighbour difference {_trend(it, 'tv')}: "
             + _direction(it, "rms_from_mean", "the image keeps moving away from the mean, the pattern gets stronger "
                          "with every step", "the image settles closer to the mean", "the image has settled")
             + ("." if it and it[-1]["p_target"] > P_REACHED else ", and the class is not reached yet.")]
    parts.append(f"Learning rate ({', '.join(r['setting'] for r in lr)}): confidence {_trend(lr, 'p_target')}, "
                 f"neighbour difference {_trend(lr, 'tv')}: "
                 + (f"too small a step has not reached the class in {iters} iterations"
                    if lr and lr[0]["p_target"] < P_REACHED else "even the smallest step reaches the class")
                 + _direction(lr, "tv", "; larger steps give harsher, noisier images",
                              "; larger steps give smoother images", "; the step size barely changes the texture")
                 + (f", and the largest overshoots (confidence {lr[-1]['p_target']:.2f})"
                    if lr and lr[-1]["p_target"] < P_REACHED <= max(r["p_target"] for r in lr) else "") + ".")
    parts.append(f"L2 weight ({', '.join(r['setting'] for r in l2)}): distance from the mean "
                 f"{_trend(l2, 'rms_from_mean')}, confidence {_trend(l2, 'p_target')}: "
                 + _direction(l2, "rms_from_mean", "here a larger λ does not shrink the image (the clamp dominates)",
                              "a stronger penalty pulls the image towards the dataset mean and keeps only the "
                              "strongest evidence", "over this range λ hardly changes the image")
                 + (f"; at {l2[-1]['setting']} the penalty wins over the class score (confidence "
                    f"{l2[-1]['p_target']:.2f})" if l2 and l2[-1]["p_target"] < P_REACHED <= max(r["p_target"] for r in l2)
                    else "") + ".")
    return " ".join(parts) + (f" (Cut-offs: a change under {FLAT:.0%} of the first value counts as none; the class is "
                              f"reached at a confidence above {P_REACHED}.)")


def keep_salient_text(keep: dict, n_images: int) -> str:
    """B-Q3: whether the most salient pixels keep the decision better than as many random pixels."""
    parts, clear = [], []
    for f, k in keep.items():
        c = compare_accuracies(k["kept_salient"], k["kept_random"], n_images)
        parts.append(f"{pct(k['kept_salient'], 0)} (random pixels: {pct(k['kept_random'], 0)}) at {f:.0%} kept")
        clear.append(c.sign)
    verdict = ("the map does find the pixels the decision rests on" if any(v > 0 for v in clear) else
               "random pixels keep the decision *better* than the map's" if any(v < 0 for v in clear) else
               "no clear difference from random pixels on these images")
    return (f"Keeping only the most salient pixels preserves the prediction for " + ", ".join(parts) + f": {verdict} "
            f"(95% CI of each difference, {n_images} images).")


SURVIVES = 0.9  # B-Q6: the attack survives 8-bit rounding when at least this share of fooling images still fools


def uint8_text(kept: float) -> str:
    """B-Q6: the share of fooling images that still fool the network once saved as 8-bit pixels."""
    return (f"Saved as 8-bit pixels, {pct(kept, 0)} of the fooling images still fool the network"
            + (": the attack survives an ordinary image file" if kept >= SURVIVES else
               "; the others sat so close to the decision boundary that rounding undid them")
            + f" (cut-off {SURVIVES:.0%}). ")


def fooling_transfer_text(rate: float, clean: float, n_fooled: int, other: str) -> str:
    """B-Q6: the course's fooling images given to another network, against its rate on clean images."""
    c = compare_accuracies(rate, clean, n_fooled)
    head = f"{pct(rate, 0)} of them make {other} predict the same target (clean images: {pct(clean, 0)}): "
    if c.sign <= 0:
        return head + ("no more than the clean images do: the course's attack is tailored to one network's "
                       f"gradients and does not transfer here (threshold {c.threshold}). ")
    return head + ("the attack transfers to a network it never saw" + (", for a minority of the images" if rate < 0.5
                                                                        else "") + f" (threshold {c.threshold}). ")


def attack_transfer_text(fgsm: dict, pgd: dict, other: str, *, eps_255: float, steps: int) -> str:
    """B-Q7: FGSM's and PGD's untargeted images given to another network, both at their whole budget."""
    f_rate, p_rate = fgsm[other], pgd[other]
    c = compare_accuracies(f_rate, p_rate, max(int(fgsm["n_fooled"]), 1), max(int(pgd["n_fooled"]), 1))
    return (f"Transfer (table), both at ε = {eps_255:.0f}/255 and their whole budget (1 step for FGSM, {steps} for "
            f"PGD): {pct(f_rate, 0)} of FGSM's and {pct(p_rate, 0)} of PGD's successful untargeted images also fool "
            f"{other}: " + c.says("the one-step attack transfers better (as Kurakin et al. 2017 report: iterative "
                                  "attacks follow the source network's own gradients more closely)",
                                  "the iterative attack transfers better here",
                                  "no clear difference between them") + f" (threshold {c.threshold}).")


# Fixed cut-offs of the Part B sentences that rest on a correlation, an SSIM or a confidence (no sampling
# model at hand for these): each sentence prints the cut-off it used.
RHO_CLASS_MAP = 0.5  # saliency of the true class vs of another class: above, the map ignores the class
RHO_SANITY = 0.3  # randomised vs trained model's maps: above, the map survives without learnt weights
RHO_TWO_NETWORKS = 0.2  # two networks' maps of the same image: above, broadly the same regions
SSIM_KEPT = 0.5  # class visualisation from a real image: above, much of the image survives
P_CROSS = 0.5  # another network's confidence in a visualisation: above, the features are shared


def class_map_text(rho: float) -> str:
    return (("much of the map is the same whatever the class, i.e. it reflects the input more than the decision"
             if rho > RHO_CLASS_MAP else "the map does depend on the class asked") + f" (cut-off ρ = {RHO_CLASS_MAP}).")


def sanity_text(rho: float) -> str:
    return (("a sizeable part of what a map shows survives without any learnt weight: that part is the image's own "
             "structure, not the model's reasoning" if rho > RHO_SANITY else
             "the maps do depend on the learnt weights, as a faithful explanation must") + f" (cut-off ρ = {RHO_SANITY}).")


def two_networks_maps_text(rho: float) -> str:
    return (("They look at broadly the same regions, but pixel by pixel the maps differ: a saliency map explains one "
             "network, not the image" if rho > RHO_TWO_NETWORKS else
             "Pixel by pixel they hardly agree: a saliency map explains one network, not the image")
            + f" (cut-off ρ = {RHO_TWO_NETWORKS}).")


def from_image_text(ssim: float) -> str:
    return (("Much of the original survives: the ascent paints the class's evidence into a real scene, which shows "
             "what the network would need to see there, in context; with the image's own class it exaggerates the "
             "features the network already relies on (DeepDream-like)" if ssim > SSIM_KEPT else
             "Little of the original structure is left after the course's number of iterations; the earlier "
             "snapshots (figure) keep more of the scene, which is the point of starting from a real image: the "
             "class's features drawn into a real context, or, with the image's own class, exaggerated")
            + f" (mean SSIM {ssim:.2f}, cut-off {SSIM_KEPT}).")


def cross_network_text(p_cross: float) -> str:
    return (("the visualisations carry class features that both networks use, although the two images of a class "
             "differ pixel by pixel (figure)" if p_cross > P_CROSS else
             "much of each image is specific to the network that made it (its own shortcuts), which is why such "
             "images explain a model rather than a class") + f" (cut-off {P_CROSS}).")
