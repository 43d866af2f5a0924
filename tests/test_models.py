"""The model registry: weights files, clear errors, preprocessing travelling with weights."""

import pickle

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models import build_model, resolve_layers
from cnnlab.transfer.inspect import last_layer, parameter_table


def test_vgg16_parameter_table_matches_the_course():
    rows = parameter_table(build_model("vgg16", "NONE").model)
    assert rows[-1]["parameters"] == 138_357_544
    fc = sum(r["parameters"] for r in rows if r["type"] == "Linear")
    assert fc == 123_642_856  # the course's "≈ 123.6 M" for the three FC layers


def test_weights_file_round_trip_and_user_normalisation(tmp_path):
    b = build_model("digitnet", "NONE")
    path = tmp_path / "w.pth"
    torch.save(b.model.state_dict(), path)
    b2 = build_model("digitnet", str(path), mean=(0.5,), std=(0.5,))
    for k, v in b.model.state_dict().items():
        assert torch.equal(v, b2.model.state_dict()[k])
    assert b2.mean == (0.5,) and b2.weights_id.startswith("file-")
    x = torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)
    assert torch.allclose(b2.preprocess(x), torch.ones(1, 1, 28, 28))  # (1 − 0.5) / 0.5


def test_weights_for_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(build_model("resnet18", "NONE").model.state_dict(), path)
    with pytest.raises(CnnlabError, match=r"does not fit --arch digitnet: .*missing keys"):
        build_model("digitnet", str(path))


def test_a_pickle_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"x": object()}, f)
    with pytest.raises(CnnlabError, match="not a loadable PyTorch state dict"):
        build_model("digitnet", str(path))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CnnlabError, match="not a state dict"):
        build_model("digitnet", str(tmp_path / "list.pth"))


def test_unknown_arch_and_layer_messages_list_choices():
    with pytest.raises(CnnlabError, match="Did you mean .*vgg16"):
        build_model("vgg61", "NONE")
    b = build_model("digitnet", "NONE")
    with pytest.raises(CnnlabError, match=r"'relu9' is not a layer of digitnet\. Aliases: .*relu_fc1"):
        resolve_layers("digitnet", b.model, ["relu9"])


def test_vgg_course_aliases_are_the_course_cuts():
    vgg = build_model("vgg16", "NONE").model
    assert resolve_layers("vgg16", vgg, ["relu7", "relu6", "pool5", "logits"]) == {
        "relu7": "classifier.4", "relu6": "classifier.1", "pool5": "flatten", "logits": "classifier.6"}
    assert last_layer(vgg)["outputs"] == 1000


def test_pixel_bounds_are_per_channel_images_of_0_and_1():
    b = build_model("vgg16", "NONE")
    lo, hi = b.pixel_bounds
    assert torch.allclose(lo.flatten(), -torch.tensor(b.mean) / torch.tensor(b.std))
    assert torch.allclose(hi.flatten(), (1 - torch.tensor(b.mean)) / torch.tensor(b.std))


ALIAS_ARCHS = ["vgg16", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "mobilenet_v2",
               "squeezenet1_0", "squeezenet1_1", "alexnet", "densenet121", "digitnet"]


def test_every_family_alias_is_a_graph_node():
    """Every alias written in layers.py (family and arch tables) resolves, for every architecture that has
    aliases, to a node of get_graph_node_names(model) — none is silently dropped."""
    import torchvision.models as tvm
    from torchvision.models.feature_extraction import get_graph_node_names

    from cnnlab.models.layers import ARCH_ALIASES, FAMILY_ALIASES, alias_table, family, layer_aliases

    covered = {family(a) for a in ALIAS_ARCHS}
    assert set(FAMILY_ALIASES) <= covered and set(ARCH_ALIASES) <= set(ALIAS_ARCHS)
    for arch in ALIAS_ARCHS:
        if arch == "digitnet":
            model = build_model("digitnet", "NONE").model
        else:
            with torch.device("meta"):  # tracing needs no values: no 100M-parameter initialisation
                model = tvm.get_model(arch, weights=None).eval()
        nodes = get_graph_node_names(model)[1]
        aliases = layer_aliases(arch, model)
        assert set(alias_table(arch)) <= set(aliases), (arch, set(alias_table(arch)) - set(aliases))
        bad = {a: n for a, n in aliases.items() if n not in nodes}
        assert not bad, (arch, bad)
        assert resolve_layers(arch, model, list(aliases)) == aliases


@pytest.mark.parametrize("arch,fire8", [("squeezenet1_0", "features.10"), ("squeezenet1_1", "features.11")])
def test_squeezenet_fire_aliases_extract_the_fire_module_outputs(arch, fire8):
    """fire8/fire9 by alias give exactly the outputs of the Fire modules (1.0 and 1.1 place them differently)."""
    from cnnlab.transfer.features import make_extractor

    torch.manual_seed(0)
    model = build_model(arch, "NONE", input_size=64).model
    nodes = resolve_layers(arch, model, ["fire8", "fire9"])
    assert nodes == {"fire8": fire8 + ".cat", "fire9": "features.12.cat"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = make_extractor(model, list(nodes.values()))(x)  # traced before any hook exists
    seen = {}
    modules = dict(model.named_modules())
    handles = [modules[m].register_forward_hook(lambda mod, i, o, m=m: seen.__setitem__(m, o.clone()))
               for m in (fire8, "features.12")]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    torch.testing.assert_close(out[fire8 + ".cat"], seen[fire8])
    torch.testing.assert_close(out["features.12.cat"], seen["features.12"])
