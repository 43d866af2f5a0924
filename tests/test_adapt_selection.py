"""Label-free model selection and pseudo-label choice."""

import math

import numpy as np
import pytest
import torch

from cnnlab.adapt.pseudo import select_pseudo_labels
from cnnlab.adapt.selection import average_thresholded_confidence, dev_risk, mean_entropy, select_epoch


def test_dev_equals_the_plain_mean_when_domains_match():
    g = torch.Generator().manual_seed(0)
    fs, ft, fv = (torch.randn(400, 5, generator=g) for _ in range(3))
    losses = torch.rand(400, generator=g)
    assert dev_risk(fs, ft, fv, losses) == pytest.approx(losses.mean().item(), abs=0.05)


def test_dev_weights_the_loss_towards_the_target():
    g = torch.Generator().manual_seed(1)
    fs = torch.randn(600, 2, generator=g)
    ft = torch.randn(600, 2, generator=g) + torch.tensor([1.5, 0.0])  # the target lies to the right
    fv = torch.randn(600, 2, generator=g)
    losses = (fv[:, 0] > 0).float()  # errors only on the right half
    assert dev_risk(fs, ft, fv, losses) > losses.mean().item() + 0.2


def test_atc_estimates_the_accuracy_of_a_calibrated_model_and_follows_the_targets_confidence():
    """Logits of a model whose confidence is its accuracy: each image is right with probability p(x).
    ATC on a target drawn like the source gives the source accuracy back; on a target where the same
    model is less confident (and so, being calibrated, less accurate) it estimates less (not exactly the
    accuracy: the share above a fixed threshold, 0.175/0.6 here, is not the mean confidence)."""
    g = torch.Generator().manual_seed(0)

    def calibrated(n, low, high):
        conf = low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)
        labels = torch.randint(0, 10, (n,), generator=g)
        right = torch.rand(n, generator=g, dtype=torch.float64) < conf
        pred = torch.where(right, labels, (labels + 1 + torch.randint(0, 9, (n,), generator=g)) % 10)
        probs = ((1 - conf) / 9).unsqueeze(1).repeat(1, 10)
        probs[torch.arange(n), pred] = conf
        return probs.log(), labels, right.double().mean().item()

    val, val_y, _ = calibrated(20000, 0.5, 1.0)
    same, _, acc_same = calibrated(20000, 0.5, 1.0)
    shifted, _, acc_shifted = calibrated(20000, 0.2, 0.8)
    assert average_thresholded_confidence(val, val_y, same) == pytest.approx(acc_same, abs=0.01)
    assert acc_shifted < acc_same - 0.2
    # the threshold is val's 25th confidence percentile, 0.625: a share (0.8 − 0.625)/0.6 of the shifted target
    assert average_thresholded_confidence(val, val_y, shifted) == pytest.approx(0.175 / 0.6, abs=0.02)
    assert math.isnan(average_thresholded_confidence(val, val_y, val[:0]))


def test_entropy_bounds():
    assert mean_entropy(torch.zeros(3, 10)) == pytest.approx(np.log(10))
    assert mean_entropy(torch.tensor([[100.0, 0, 0]])) == pytest.approx(0.0, abs=1e-6)


def test_select_epoch_directions_and_ties():
    h = [{"epoch": 1, "source_val_acc": 0.9, "dev_risk": 0.3, "target_test_acc": 0.5},
         {"epoch": 2, "source_val_acc": 0.95, "dev_risk": 0.4, "target_test_acc": 0.7},
         {"epoch": 3, "source_val_acc": 0.95, "dev_risk": 0.2, "target_test_acc": 0.6}]
    assert select_epoch(h, "source_val_acc")["epoch"] == 2  # earliest of equals
    assert select_epoch(h, "dev_risk")["epoch"] == 3
    assert select_epoch(h, "target_test_acc")["epoch"] == 2
    assert select_epoch(h, "last")["epoch"] == 3


def test_pseudo_labels_threshold_and_class_balance():
    logits = torch.full((10, 3), -10.0)
    logits[:8, 0] = 10.0  # 8 confident "0"
    logits[8, 1] = 10.0  # 1 confident "1"
    logits[9] = 0.0  # unsure
    idx, pl = select_pseudo_labels(logits, threshold=0.9, class_balance=False)
    assert idx.tolist() == list(range(9)) and pl.tolist() == [0] * 8 + [1]
    idx, pl = select_pseudo_labels(logits, threshold=0.9, class_balance=True, cap_fraction=1.0)
    assert (pl == 0).sum().item() == 4 and (pl == 1).sum().item() == 1  # cap ⌈10/3⌉ = 4 per class


def test_snd_is_the_log_of_each_clusters_size_for_confident_clusters():
    from cnnlab.adapt.selection import soft_neighbourhood_density

    n = 40
    one_class = torch.zeros(n, 10)
    one_class[:, 3] = 30.0
    assert soft_neighbourhood_density(one_class) == pytest.approx(math.log(n - 1), rel=1e-6)
    two = one_class.clone()
    two[n // 2:, 3], two[n // 2:, 7] = 0.0, 30.0  # two classes of 20: each image's neighbours are its class
    assert soft_neighbourhood_density(two) == pytest.approx(math.log(n // 2 - 1), rel=1e-4)
    spread = torch.randn(n, 10, generator=torch.Generator().manual_seed(0)) * 3  # no clusters
    assert soft_neighbourhood_density(spread) < soft_neighbourhood_density(two)


def _h(*rows, unit="epoch"):
    return [{unit: i + 1, **r} for i, r in enumerate(rows)], unit


def test_picks_across_models_and_the_warnings_follow_the_numbers():
    from cnnlab.adapt.selection import model_selection_rows, selection_warnings

    so = {"dev_risk": 1.0, "snd": 5.0, "atc": 0.5, "source_val_acc": 0.99, "target_entropy": 0.5, "target_test_acc": 0.55}
    good = {"dev_risk": 0.6, "snd": 6.0, "atc": 0.9, "source_val_acc": 0.98, "target_entropy": 0.2, "target_test_acc": 0.9}
    pool = {"source only": _h(so), "VADA": _h({**good, "dev_risk": 0.9, "snd": 5.8, "target_test_acc": 0.7}, good),
            "VADA + DIRT-T": _h(good, {**good, "target_entropy": 0.1, "snd": 5.5, "dev_risk": 0.7,
                                       "target_test_acc": 0.92}, unit="round")}
    rows = {r["selected by"].split(" (")[0]: r for r in model_selection_rows(pool)}
    assert (rows["DEV risk"]["model"], rows["DEV risk"]["at"]) == ("VADA", "epoch 2")  # ties: first model
    assert rows["source validation accuracy"]["model"] == "source only"
    assert rows["target entropy"]["recommended"] == "yes" and rows["target entropy"]["at"] == "round 2"
    assert rows["ORACLE: best on target test"]["at"] == "round 2" and rows["ORACLE: best on target test"]["target test acc"] == 0.92
    # DEV picks VADA, the recommended rule (entropy) VADA + DIRT-T, its refinement: no disagreement
    assert selection_warnings(pool, baseline="source only") == []
    # DEV moves to source-only: another model, said
    pool["source only"][0][0]["dev_risk"] = 0.1
    notes = [n for n in selection_warnings(pool, baseline="source only") if "disagree" in n]
    assert len(notes) == 1 and "target entropy picks VADA + DIRT-T (round 2)" in notes[0]
    assert "DEV picks source only (epoch 1)" in notes[0] and "ATC" not in notes[0]
    pool["source only"][0][0]["dev_risk"] = 1.0
    # an adapted model that every target signal rates below source-only: said plainly; some of them: mixed
    pool["VADA"][0][1].update(dev_risk=1.2, snd=4.0, atc=0.4)
    hurt = [n for n in selection_warnings(pool, "source only") if "VADA is worse" in n]
    assert len(hurt) == 1 and hurt[0].startswith("DEV, ATC and SND all say") and "may have hurt" in hurt[0]
    assert "ATC: estimated target accuracy 0.4 against 0.5" in hurt[0]
    pool["VADA"][0][1].update(snd=6.0)
    mixed = [n for n in selection_warnings(pool, "source only") if "VADA is worse" in n]
    assert mixed[0].startswith("DEV and ATC both say") and "SND says it is better" in mixed[0] and "mixed" in mixed[0]
    # source validation accuracy: 0.98 against 0.99 is no clear difference on 500 images, clear on 20,000
    assert not any("learned the labelled source task" in n for n in selection_warnings(pool, "source only", n_val=500))
    notes = [n for n in selection_warnings(pool, "source only", n_val=20000) if "learned the labelled" in n]
    assert len(notes) == 2 and "VADA learned" in notes[0] and "98.0% against 99.0%" in notes[0]
    # DIRT-T refines on the target alone: its source accuracy is not held against it
    notes = selection_warnings(pool, "source only", n_val=20000, target_alone=("VADA + DIRT-T",))
    assert [n.split(" learned")[0] for n in notes if "learned the labelled" in n] == ["VADA"]


def test_selection_text_says_agreement_or_repeats_the_warnings():
    from cnnlab.adapt.lab import selection_text
    from cnnlab.adapt.selection import model_selection_rows

    pool = {"DANN": _h({"dev_risk": 0.5, "snd": 5.0, "source_val_acc": 0.9, "target_entropy": 0.1, "atc": 0.75,
                        "target_test_acc": 0.8})}
    across = model_selection_rows(pool)
    calm = selection_text(across, [])
    assert "target entropy (the rule chosen on a development pair" in calm
    assert "picks DANN (epoch 1, 80.0% on the target test set; ATC estimated 75.0% without labels)" in calm
    assert "DEV and ATC pick the same model" in calm
    worried = selection_text(across, ["The label-free rules disagree: X."])
    assert "disagree: X." in worried and "agree, and" not in worried
