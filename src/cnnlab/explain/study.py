"""Part B's studies, shared by ``cnnlab explain`` and Part B of ``cnnlab lab``.

Each study takes a network, images and a validated config (a frozen dataclass), writes its tables
(CSV) and figures into a :class:`cnnlab.runs.Run`, and returns a frozen dataclass of the numbers and
figure paths; callers only print them or write report text from them. Output names default to the
command's; the lab passes its own (``B-Q…``).

- :func:`saliency_study` (maps, sanity check, a second network), :func:`saliency_measures` (B-Q1..B-Q4);
- :func:`fooling_study` (fooling images and their transfer), :func:`attack_study` (FGSM, I-FGSM,
  PGD: table, examples, transfer matrix);
- :func:`classviz_study`, :func:`sweep_study`, and B-Q8/B-Q10/B-Q11's :func:`class_likeness`,
  :func:`from_image_study`, :func:`two_networks_study`.
"""

from cnnlab.explain.study_attacks import (ATTACK_NAMES, AttackConfig, AttackRun, AttackSpec, AttackStudy,
                                          FoolingConfig, FoolingResult, attack_study, command_attacks,
                                          course_attacks, fooling_study, num_classes, random_pair_targets)
from cnnlab.explain.study_classviz import (ClassLikeness, ClassvizConfig, ClassvizResult, FromImageResult,
                                          SweepConfig, SweepResult, TwoNetworks, class_likeness, classviz_study,
                                          from_image_study, sweep_study, two_networks_study)
from cnnlab.explain.study_saliency import (COMMAND_LABELS, COURSE_LABELS, SaliencyConfig, SaliencyMeasures,
                                          SaliencyResult, saliency_measures, saliency_study)

__all__ = ["SaliencyConfig", "SaliencyResult", "SaliencyMeasures", "saliency_study", "saliency_measures",
           "COMMAND_LABELS", "COURSE_LABELS", "FoolingConfig", "FoolingResult", "fooling_study", "AttackConfig",
           "AttackSpec", "AttackRun", "AttackStudy", "attack_study", "command_attacks", "course_attacks",
           "ATTACK_NAMES", "random_pair_targets", "num_classes", "ClassvizConfig", "ClassvizResult",
           "classviz_study", "SweepConfig", "SweepResult", "sweep_study", "ClassLikeness", "class_likeness",
           "FromImageResult", "from_image_study", "TwoNetworks", "two_networks_study"]
