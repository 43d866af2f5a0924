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
