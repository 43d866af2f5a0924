"""Layer names: torchvision FX node names, plus short aliases per architecture.

VGG gets the course's names: ``[:-2]`` of ``vgg16.classifier`` is relu7 (``classifier.4``), ``[:-4]``
is relu6 (``classifier.1``; the dropout after it is inactive in eval mode), ``[:-7]`` is the
flattened pool5 (``flatten``). Every model gets ``penultimate`` (the input of its classifier head)
and ``logits`` (its output).

An alias names either an FX node or a module; a module stands for its output node (the last node
traced inside it: ``layer4`` → ``layer4.1.relu_1`` in ResNet-18, ``layer4.2.relu_2`` in ResNet-50),
so every alias that :func:`layer_aliases` returns is a node ``create_feature_extractor`` accepts.
Grad-CAM maps such a node back to the module (:func:`output_module`).
"""

from __future__ import annotations

import weakref

import torch.nn as nn

from cnnlab.errors import CnnlabError

VGG_ALIASES = {"pool5": "flatten", "fc6": "classifier.0", "relu6": "classifier.1", "fc7": "classifier.3",
               "relu7": "classifier.4", "logits": "classifier.6"}

# Architecture family → aliases (besides the generic penultimate/logits).
FAMILY_ALIASES = {
    "vgg": VGG_ALIASES,
    "resnet": {"pool": "flatten", "layer3": "layer3", "layer4": "layer4", "logits": "fc"},
    "resnext": {"pool": "flatten", "layer3": "layer3", "layer4": "layer4", "logits": "fc"},
    "wide_resnet": {"pool": "flatten", "layer3": "layer3", "layer4": "layer4", "logits": "fc"},
    "mobilenet_v2": {"pool": "flatten", "block13": "features.13.add", "block15": "features.15.add",
                     "block16": "features.16.add", "block17": "features.17.conv.3", "last_conv": "features.18",
                     "logits": "classifier.1"},
    "squeezenet": {"conv10": "classifier.2", "logits": "flatten"},  # fire modules: ARCH_ALIASES
    "alexnet": {"pool5": "flatten", "relu6": "classifier.2", "relu7": "classifier.5", "logits": "classifier.6"},
    "densenet": {"pool": "flatten", "logits": "classifier"},
    "digitnet": {"conv": "flatten", "fc1": "classifier.0", "relu_fc1": "classifier.1", "logits": "classifier.3"},
}

# Aliases that differ between members of a family (overriding FAMILY_ALIASES). SqueezeNet 1.0 and 1.1
# place their max-pools differently, so fire8 is features.10 in 1.0 (features.11 is a pool) and
# features.11 in 1.1; a Fire module's output is its concatenation node.
_FIRE = {"squeezenet1_0": (3, 4, 5, 7, 8, 9, 10, 12), "squeezenet1_1": (3, 4, 6, 7, 9, 10, 11, 12)}
ARCH_ALIASES = {arch: {f"fire{k}": f"features.{i}.cat" for k, i in enumerate(idx, start=2)}
                for arch, idx in _FIRE.items()}

DEFAULT_LAYER = {"vgg": "relu7", "alexnet": "relu7", "squeezenet": "fire9", "digitnet": "relu_fc1",
                 "mobilenet_v2": "pool", "resnet": "pool", "densenet": "pool"}


def family(arch: str) -> str:
    for fam in sorted(FAMILY_ALIASES, key=len, reverse=True):
        if arch.startswith(fam):
            return fam
    return arch


def alias_table(arch: str) -> dict[str, str]:
    """The alias → node-or-module table written for ``arch`` (family aliases, then arch-specific ones)."""
    return {**FAMILY_ALIASES.get(family(arch), {}), **ARCH_ALIASES.get(arch, {})}


# Tracing a model for its node names takes seconds for the big ones: remembered per model object,
# weakly, so that a model dropped by its user is freed (a VGG16 is 0.55 GB).
_NODE_NAMES: "weakref.WeakKeyDictionary[nn.Module, tuple[str, ...]]" = weakref.WeakKeyDictionary()


def node_names(model: nn.Module) -> list[str]:
    """Every FX node name of ``model`` in eval mode (the names ``create_feature_extractor`` takes)."""
    if model not in _NODE_NAMES:
        from torchvision.models.feature_extraction import get_graph_node_names

        _NODE_NAMES[model] = tuple(get_graph_node_names(model)[1])
    return list(_NODE_NAMES[model])


def layer_aliases(arch: str, model: nn.Module) -> dict[str, str]:
    """Alias → node name for ``arch``, including the generic ``penultimate`` and ``logits``."""
    nodes = node_names(model)
    aliases: dict[str, str] = {}
    last_linear = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last_linear = name
    modules = dict(model.named_modules())
    if last_linear is not None and last_linear in nodes:
        # the input of the classifier head, skipping dropouts (identities in eval mode)
        i = nodes.index(last_linear) - 1
        while i > 0 and isinstance(modules.get(nodes[i]), nn.Dropout):
            i -= 1
        aliases["penultimate"] = nodes[i]
    elif "flatten" in nodes:
        aliases["penultimate"] = "flatten"
    aliases["logits"] = [n for n in nodes if n != "output"][-1]
    for alias, name in alias_table(arch).items():
        node = name if name in nodes else module_output_node(nodes, name)
        if node is not None:
            aliases[alias] = node
    return aliases


def module_output_node(nodes: list[str], module: str) -> str | None:
    """The node holding ``module``'s output: the module itself when FX keeps it a leaf, else the last
    node traced inside it (``features.12`` → ``features.12.cat``); None when no node is inside it."""
    if module in nodes:
        return module
    inside = [n for n in nodes if n.startswith(module + ".")]
    return inside[-1] if inside else None


def output_module(model: nn.Module, node: str) -> str | None:
    """The module whose output node ``node`` is (the inverse of :func:`module_output_node`): ``node``
    itself when it is a module, else the innermost enclosing module of which it is the last node
    (``features.12.cat`` → ``features.12``); None for nodes inside a module that are not its output."""
    modules = dict(model.named_modules())
    if node in modules:
        return node
    nodes = node_names(model)
    prefix = node
    while "." in prefix:
        prefix = prefix.rsplit(".", 1)[0]
        if prefix in modules:
            return prefix if module_output_node(nodes, prefix) == node else None
    return None


def default_layer(arch: str) -> str:
    return DEFAULT_LAYER.get(family(arch), "penultimate")


def resolve_layers(arch: str, model: nn.Module, names: list[str], flag: str = "--layers") -> dict[str, str]:
    """Requested names (aliases or node names) → {requested name: node name}. Unknown names are one
    clear error (naming the option ``flag``) listing the aliases and some node names."""
    aliases = layer_aliases(arch, model)
    nodes = node_names(model)
    out = {}
    for n in names:
        if n in aliases:
            out[n] = aliases[n]
        elif n in nodes and n != "x":
            out[n] = n
        else:
            sample = ", ".join(nodes[1:8] + ["…"] + nodes[-6:-1]) if len(nodes) > 14 else ", ".join(nodes[1:-1])
            raise CnnlabError(
                f"{flag}: {n!r} is not a layer of {arch}. Aliases: {', '.join(aliases)}. "
                f"Node names ({len(nodes)}): {sample}. `cnnlab layers --arch {arch}` lists them all")
    return out
