"""The studies of Part C: C-Q1 (no GRL), C-Q3 (the GRL factor λ), t-SNE of the features.

Each returns table rows (and the histories for curves); the callers write them into a run.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from cnnlab.adapt import selection
from cnnlab.adapt.dann import AdaptConfig, AdaptResult, features_and_logits, train_adapt
from cnnlab.adapt.domains import DomainPair
from cnnlab.adapt.grl import LambdaSchedule

log = logging.getLogger("cnnlab")

# C-Q3: constant 1 from the first step (what students tried), the course's γ = 2, the paper's γ = 10.
LAMBDA_VARIANTS = (LambdaSchedule("constant", value=1.0), LambdaSchedule("course"), LambdaSchedule("paper"))


def variant_row(label: str, history: list[dict]) -> dict:
    last = history[-1]
    picked = selection.select_epoch(history, "source_val_acc")
    oracle = selection.select_epoch(history, "target_test_acc")
    return {"variant": label, "target test acc (last)": last["target_test_acc"],
            "source test acc (last)": last["source_test_acc"], "domain acc (last)": last.get("domain_acc"),
            "domain loss (last epoch mean)": last.get("domain_loss"),
            "target acc, picked by source val": picked["target_test_acc"],
            "ORACLE best target acc": oracle["target_test_acc"]}


def lambda_study(domains: DomainPair, base: AdaptConfig, *, out, device="cpu", resume: bool = False,
                 variants=LAMBDA_VARIANTS, reuse: dict[str, AdaptResult] | None = None) -> tuple[list[dict], dict]:
    """Train DANN once per λ schedule (C-Q3; C-Q1 is the variant ``LambdaSchedule("none")``).
    ``reuse`` maps a schedule label to a run already trained with exactly that schedule."""
    rows, hist = [], {}
    for sched in variants:
        res = (reuse or {}).get(sched.label)
        if res is None:
            name = f"dann_{sched.kind}" + (f"_{sched.value:g}" if sched.kind == "constant" else "")
            res = train_adapt(domains, replace(base, method="dann", lambda_schedule=sched), out=out, name=name,
                              device=device, resume=resume)
        rows.append(variant_row(sched.label, res.history))
        hist[sched.label] = res.history
    return rows, hist


def tsne_features(models: dict[str, torch.nn.Module], domains: DomainPair, *, n: int = 1000, seed: int = 0,
                  perplexity: float = 30.0) -> dict[str, dict]:
    """2-d t-SNE (sklearn) of the 2352-d features of n source + n target test images per model, plus a
    linear domain probe (5-fold logistic regression accuracy: 0.5 = domains indistinguishable)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.manifold import TSNE
    from sklearn.model_selection import cross_val_score
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(seed)
    i_s = torch.randperm(len(domains.source_test), generator=g)[:n]
    i_t = torch.randperm(len(domains.target_test), generator=g)[:n]
    labels = torch.cat([domains.source_test.labels[i_s], domains.target_test.labels[i_t]]).numpy()
    dom = np.r_[np.ones(len(i_s)), np.zeros(len(i_t))]
    out = {}
    for name, net in models.items():
        feats = torch.cat([features_and_logits(net, domains.source_test.images[i_s])[0],
                           features_and_logits(net, domains.target_test.images[i_t])[0]]).numpy()  # (2n, 2352)
        xy = TSNE(n_components=2, perplexity=min(perplexity, (len(feats) - 1) / 3), init="pca",
                  random_state=seed).fit_transform(feats)
        probe = cross_val_score(LogisticRegression(C=0.1, max_iter=300),
                                StandardScaler().fit_transform(feats), dom, cv=5).mean()
        out[name] = {"xy": xy, "domain": dom, "labels": labels, "domain_probe_acc": float(probe),
                     "proxy_a_distance": float(2 * (1 - 2 * (1 - probe)))}
    return out


def run_studies(run, domains: DomainPair, cfg, results: dict[str, AdaptResult], studies: list[str], *,
                device="cpu", resume: bool = False, tsne_n: int = 1000) -> dict:
    """Run the chosen studies (``no-grl``, ``lambda``, ``tsne``) into ``run``; reuses the protocol's DANN run."""
    from cnnlab.adapt import figures
    from cnnlab.adapt.protocol import ProtocolConfig

    assert isinstance(cfg, ProtocolConfig)
    base = cfg.config_for("dann")
    reuse = {base.lambda_schedule.label: results["dann"]} if "dann" in results else {}
    out: dict = {}
    if "no-grl" in studies:
        rows, hist = lambda_study(domains, base, out=run.checkpoints, device=device, resume=resume,
                                  variants=(LambdaSchedule("none"), base.lambda_schedule), reuse=reuse)
        run.write_table("study_no_grl", rows)
        out["no-grl"] = {"rows": rows, "figure": run.save_figure(figures.curves_figure(hist), "study_no_grl")}
    if "lambda" in studies:
        rows, hist = lambda_study(domains, base, out=run.checkpoints, device=device, resume=resume, reuse=reuse)
        run.write_table("study_lambda", rows)
        out["lambda"] = {"rows": rows, "figure": run.save_figure(figures.curves_figure(hist), "study_lambda"),
                         "schedules": run.save_figure(figures.schedules_figure(list(LAMBDA_VARIANTS), base.lr,
                                                                               epochs=base.epochs), "schedules")}
    if "tsne" in studies:
        models = {}
        for method, label in (("source_only", "source only"), ("dann", "DANN")):
            if method in results:
                res = results[method]
                models[label] = res.load_epoch(selection.select_epoch(res.history, "last")["epoch"], device)
        emb = tsne_features(models, domains, n=tsne_n, seed=cfg.seed)
        rows = [{"model": k, "points": len(v["xy"]), "domain probe acc (5-fold LR)": v["domain_probe_acc"],
                 "proxy A-distance": v["proxy_a_distance"]} for k, v in emb.items()]
        run.write_table("study_tsne", rows)
        out["tsne"] = {"rows": rows, "figure": run.save_figure(figures.tsne_figure(emb), "tsne")}
    return out
