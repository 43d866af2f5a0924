"""Part B's lab in the course's ImageNet setting, offline: SqueezeNet 1.1 (+ VGG16) "with ImageNet weights"
on imagenet_val_25.npz, with the course's examples (quail → stingray, hay → snail, tarantula …).

No real weights exist here, so a randomly initialised SqueezeNet 1.1 state dict is saved where torchvision's
cache expects its DEFAULT weights file (``$TORCH_HOME/hub/checkpoints/squeezenet1_1-b8a52dc0.pth``):
``weights_cached`` then reports the weights as available and ``build_model(..., "DEFAULT")`` loads them
through torchvision's own loader. The npz is a small fake in the course's format (X N×224×224×3 uint8, y,
a pickled label_map dict), with the course's images in another order, so the examples must be found by name.
"""

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.report import load_sections
from test_explain_saliency import one_thread  # noqa: F401 (autouse fixture)

# Border terrier, hay, Shih-Tzu… quail: the course's image 0 (hay) and 1 (quail) moved to 1 and 3
LABELS = [182, 958, 244, 85, 294, 804]


def _categories() -> list[str]:
    import torchvision.models as tvm

    return list(tvm.SqueezeNet1_1_Weights.DEFAULT.meta["categories"])


def _fake_npz(path: Path) -> dict[int, str]:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (len(LABELS), 224, 224, 3), dtype=np.uint8)
    label_map = dict(enumerate(_categories()))
    with zipfile.ZipFile(path, "w") as z:  # np.savez's layout, with the label map pickled as in the course's file
        for name, arr, pick in (("X", X, False), ("y", np.array(LABELS, dtype=np.int64), False),
                                ("label_map", np.array(label_map, dtype=object), True)):
            b = io.BytesIO()
            np.save(b, arr, allow_pickle=pick)
            z.writestr(f"{name}.npy", b.getvalue())
    return label_map


def _cache_random_weights(monkeypatch, torch_home: Path, arch: str) -> None:
    import torchvision.models as tvm

    from cnnlab.models.registry import weights_cached

    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    ckpt = torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    w = tvm.get_model_weights(arch).DEFAULT
    torch.manual_seed(0)
    torch.save(tvm.get_model(arch, weights=None).state_dict(), ckpt / Path(w.url).name)
    assert weights_cached(arch)


def _lab(tmp_path, capsys) -> tuple[Path, dict, str]:
    data = tmp_path / "data"
    data.mkdir()
    label_map = _fake_npz(data / "imagenet_val_25.npz")
    out = tmp_path / "lab"
    assert main(["lab", "--parts", "B", "--dry-run", "--data-root", str(data), "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    part = out / "B-explain"
    sections = {s.qid: s for s in load_sections(part)}
    for s in sections.values():  # every figure of the part exists, and the report links to files that exist
        for b in s.blocks:
            if "figure" in b:
                assert (part / b["figure"]).is_file() and (part / b["figure"]).stat().st_size > 1000, b["figure"]
    page = (out / "report.html").read_text()
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert srcs and all((out / s).is_file() for s in srcs)
    for name in ("quail", "stingray", "hay", "snail", "tarantula"):  # the course's examples, in the report
        assert re.search(rf"\b{name}\b", page), name
    return part, sections, label_map


def _rows(section, key="table"):
    return [r for b in section.blocks for r in b.get(key, [])]


def _course_examples(sections, label_map):
    by_name = {v.split(",")[0]: k for k, v in label_map.items()}
    hay, quail = LABELS.index(by_name["hay"]), LABELS.index(by_name["quail"])
    q0 = " ".join(b.get("text", "") for b in sections["B-Q0"].blocks)
    assert "squeezenet1_1" in q0 and "ImageNet" in q0
    # B-Q5: quail → stingray, on the image labelled quail in the npz
    ex = _rows(sections["B-Q5"])[0]
    assert (ex["image"], ex["label"], ex["target"]) == (quail, "quail", "stingray")
    # B-Q10: hay → snail, from the image labelled hay
    r10 = _rows(sections["B-Q10"])[0]
    assert (r10["image"], r10["label"], r10["target"]) == (hay, "hay", "snail")
    # B-Q8: the course's first class visualisation
    assert _rows(sections["B-Q8"])[0]["class"] == "tarantula"


def test_lab_b_imagenet_setting_with_cached_squeezenet(tmp_path, monkeypatch, capsys):
    _cache_random_weights(monkeypatch, tmp_path / "torch", "squeezenet1_1")
    part, sections, label_map = _lab(tmp_path, capsys)
    assert list(sections) == ["B-Q0", "B-Q1", "B-Q2", "B-Q3", "B-Q5", "B-Q6", "B-Q7", "B-Q8", "B-Q9", "B-Q10"]
    _course_examples(sections, label_map)
    assert any("B-Q4 and B-Q11 are skipped" in b.get("text", "") for b in sections["B-Q0"].blocks)
    # Grad-CAM reads SqueezeNet's fire9 (features.12)
    assert any("features.12" in str(r.get("comparison", "")) for r in _rows(sections["B-Q2"]))


@pytest.mark.slow
def test_lab_b_imagenet_setting_with_squeezenet_and_vgg16(tmp_path, monkeypatch, capsys):
    """The course's pair: SqueezeNet 1.1 as the network studied, VGG16 (also "cached") as the second
    network of B-Q4 (saliency), B-Q6/B-Q7 (transfer) and B-Q11 (class visualisation). A 550 MB random
    VGG16 file: slow."""
    for arch in ("squeezenet1_1", "vgg16"):
        _cache_random_weights(monkeypatch, tmp_path / "torch", arch)
    part, sections, label_map = _lab(tmp_path, capsys)
    assert list(sections) == ["B-Q0"] + [f"B-Q{i}" for i in range(1, 12)]
    _course_examples(sections, label_map)
    q0 = " ".join(b.get("text", "") for b in sections["B-Q0"].blocks)
    assert "**squeezenet1_1** and **vgg16**" in q0
    assert any("pred vgg16" in k for r in _rows(sections["B-Q4"]) for k in r)
    assert any("vgg16" in k for r in _rows(sections["B-Q11"]) for k in r)
    assert any("vgg16" in k for r in _rows(sections["B-Q6"]) for k in r)
