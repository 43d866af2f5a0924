"""Part B: visualising networks with gradients with respect to the input.

One verb per method; each takes any classifier bundle (``cnnlab.models.build_model``) and uint8
images (or already normalised tensors):

- :func:`saliency_maps` (the course), :func:`smoothgrad`, :func:`grad_cam`,
  :func:`model_randomization_check` (sanity check of a map);
- :func:`fooling_images` (the course), :func:`fgsm`, :func:`ifgsm`, :func:`pgd`;
  :func:`attack_table`, :func:`summarize`, :func:`transfer_matrix` measure them;
- :func:`class_visualization` (the course) and its B-Q9 :func:`sweep`.

:mod:`cnnlab.explain.study` runs them as studies (tables and figures into a run folder, results
as dataclasses) for ``cnnlab explain`` and Part B of the lab.
"""

from cnnlab.explain.attacks import ATTACKS, AttackResult, fgsm, ifgsm, pgd
from cnnlab.explain.classviz import ClassVisualization, blur, class_visualization, jitter, sweep, unjitter
from cnnlab.explain.fooling import fooling_images, image_target_pairs, random_targets
from cnnlab.explain.metrics import attack_table, image_quality, summarize, transfer_matrix
from cnnlab.explain.saliency import grad_cam, gradcam_layer, predict_proba, saliency_maps, smoothgrad
from cnnlab.explain.sanity import model_randomization_check, spearman

__all__ = ["saliency_maps", "smoothgrad", "grad_cam", "gradcam_layer", "predict_proba", "model_randomization_check",
           "spearman", "fooling_images", "random_targets", "image_target_pairs", "fgsm", "ifgsm", "pgd", "ATTACKS",
           "AttackResult", "attack_table", "summarize", "transfer_matrix", "image_quality", "class_visualization",
           "ClassVisualization", "sweep", "jitter", "unjitter", "blur"]
