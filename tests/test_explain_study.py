"""Part B's study layer: configs are checked when built (one clear error naming the option), and each
study writes its tables and figures into the run and returns frozen results."""

import dataclasses

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain.study import (AttackConfig, ClassvizConfig, FoolingConfig, SaliencyConfig, SweepConfig,
                                  attack_study, classviz_study, command_attacks, course_attacks, fooling_study,
                                  random_pair_targets, saliency_study, sweep_study)
from cnnlab.models import build_model
from cnnlab.runs import Run
from test_explain_saliency import one_thread  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("make,needle", [
    (lambda: SaliencyConfig(methods=("occlusion",)), "--method occlusion"),
    (lambda: SaliencyConfig(methods=("smoothgrad",), samples=0), "--samples 0"),
    (lambda: FoolingConfig(max_iter=0), "--max-iter 0"),
    (lambda: FoolingConfig(eta=0), "--eta 0"),
    (lambda: AttackConfig(command_attacks(["fgsm"], False, "m"), eps=0), "--eps 0"),
    (lambda: AttackConfig(command_attacks(["pgd-l2"], False, "m"), eps_l2=-1), "--eps-l2 -1"),
    (lambda: AttackConfig(command_attacks(["ifgsm"], False, "m"), steps=0), "--steps 0"),
    (lambda: AttackConfig(command_attacks(["fgsm"], False, "m"), alpha=-0.1), "--alpha -0.1"),
    (lambda: AttackConfig(command_attacks(["occlusion"], False, "m")), "--attack 'occlusion'"),
    (lambda: ClassvizConfig(iterations=0), "--iterations 0"),
    (lambda: ClassvizConfig(snapshot_every=0), "--snapshot-every 0"),
    (lambda: SweepConfig(iterations=()), "sweep iterations"),
])
def test_configs_are_checked_when_built(make, needle):
    with pytest.raises(CnnlabError) as e:
        make()
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_unused_settings_are_not_checked():
    AttackConfig(command_attacks(["fgsm"], False, "m"), steps=0)  # FGSM takes one step whatever --steps says
    SaliencyConfig(methods=("saliency",), samples=0)
    cfg = FoolingConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_iter = 5


def test_course_attacks_report_each_attack_both_ways():
    specs = course_attacks()
    assert [s.label for s in specs[:4]] == ["FGSM untargeted", "I-FGSM untargeted", "PGD L∞ untargeted",
                                            "PGD L2 untargeted"]
    assert [s.show for s in specs] == [True] * 4 + [False] * 4
    assert [s.transfer_key is not None for s in specs] == [True, False, True, True] * 2


@pytest.fixture
def tiny(tmp_path):
    from cnnlab.data import load_dataset

    torch.manual_seed(0)
    bundle = build_model("digitnet", "NONE")
    ds = load_dataset("mnist-embedded", "test")
    run = Run.create(tmp_path / "run", "test", {}, 0)
    yield bundle, ds.images[:3], ds.labels[:3], run
    run.close()


def test_studies_write_their_outputs_and_return_frozen_results(tiny):
    bundle, images, labels, run = tiny
    g = torch.Generator().manual_seed(0)
    sal = saliency_study(run, bundle, images, SaliencyConfig(methods=("saliency", "gradcam"), sanity=True,
                                                              sanity_steps=2), labels=labels, generator=g)
    assert len(sal.rows) == 3 and set(sal.maps) == {"saliency", "gradcam"}
    assert "spearman saliency vs grad-cam features.4" in sal.rows[0]
    assert (run.root / "per_image.csv").is_file() and (run.root / "sanity_check.csv").is_file()

    targets = random_pair_targets(bundle, images, labels, 2, g)
    assert targets.shape == (3, 2) and bool((targets != labels[:, None]).all())
    fool = fooling_study(run, bundle, images, labels, targets, FoolingConfig(max_iter=3), ids=["a", "b", "c"],
                         transfer={"A": bundle, "B": bundle})
    assert [r["image"] for r in fool.rows] == ["a", "a", "b", "b", "c", "c"]
    assert fool.summary["n"] == 6 and fool.transfer[0]["crafted on"] == "A"

    att = attack_study(run, bundle, images, AttackConfig(command_attacks(["fgsm", "pgd-l2"], False, "A"), steps=2),
                       labels=labels, generator=g, transfer={"A": bundle})
    assert [s["attack"] for s in att.table] == ["fgsm", "pgd-l2"]
    assert [r["crafted on"] for r in att.transfer] == ["A fgsm", "A pgd-l2"]
    assert (run.root / "per_image_fgsm.csv").is_file() and (run.root / "summary.csv").is_file()

    vis = classviz_study(run, bundle, [3, 8], ClassvizConfig(iterations=3, snapshot_every=1), generator=g)
    assert [r["class"] for r in vis.rows] == ["3", "8"] and (run.root / "history.csv").is_file()
    sw = sweep_study(run, bundle, 3, SweepConfig(iterations=(1, 2), num_iterations=2), generator=g, table="sweep_rows")
    assert {r["varied"] for r in sw.rows} == {"iterations", "learning_rate", "l2_reg"}

    for res in (sal, fool, att, vis, sw):
        assert res.figures and all(p.is_file() for p in res.figures.values())
        with pytest.raises(dataclasses.FrozenInstanceError):
            res.figures = {}
