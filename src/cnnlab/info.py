"""Small listing commands: ``cnnlab datasets``, ``cnnlab models``, ``cnnlab layers``."""

from __future__ import annotations


def _datasets(args) -> int:
    from cnnlab.data import sources

    width = max(map(len, sources.DATASETS))
    print("datasets (--dataset / --source / --target NAME):")
    for name, what in sources.DATASETS.items():
        print(f"  {name:{width}s}  {what}")
    return 0


def _models(args) -> int:
    from cnnlab.models.registry import OWN_MODELS, _load_own_models, torchvision_classifiers

    _load_own_models()
    print("cnnlab's own networks:")
    for name, spec in sorted(OWN_MODELS.items()):
        print(f"  {name:24s} {spec.help}")
    print("torchvision classifiers (--weights DEFAULT | NONE | file.pth):")
    names = torchvision_classifiers()
    for i in range(0, len(names), 4):
        print("  " + "".join(f"{n:24s}" for n in names[i:i + 4]))
    return 0


def _layers(args) -> int:
    from cnnlab.models import build_model
    from cnnlab.models.layers import default_layer, layer_aliases, node_names

    bundle = build_model(args.arch, "NONE")
    print(f"aliases for {args.arch} (default layer: {default_layer(args.arch)}):")
    for a, n in layer_aliases(args.arch, bundle.model).items():
        print(f"  {a:14s} -> {n}")
    print("node names:")
    print("  " + "\n  ".join(n for n in node_names(bundle.model) if n not in ("x", "output")))
    return 0


def add_commands(sub) -> None:
    sub.add_parser("datasets", help="list dataset names and layouts").set_defaults(func=_datasets)
    sub.add_parser("models", help="list model names").set_defaults(func=_models)
    from cnnlab.cli import HelpFormatter

    p = sub.add_parser("layers", help="list the layer names and aliases of a model", formatter_class=HelpFormatter)
    p.add_argument("--arch", default="vgg16", help="model name (`cnnlab models` lists them)")
    p.set_defaults(func=_layers)
