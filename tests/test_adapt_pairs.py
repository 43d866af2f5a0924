"""The robustness pairs of Part C that need no extra data: MNIST-M at 0.875 scale, UCI digits as the
target, and the reverse direction MNIST-M → MNIST (disjoint digits on the two sides)."""

import pytest
import torch

from cnnlab.adapt.domains import load_domains
from cnnlab.adapt.mnistm import mnistm_scale, shrunk_digits
from cnnlab.data import TensorImageSet
from cnnlab.errors import CnnlabError


def _extent(images: torch.Tensor) -> torch.Tensor:
    """Height of the inked rows of each image (pixels above 64)."""
    rows = (images[:, 0] > 64).any(2)
    idx = torch.arange(images.shape[-2]).expand_as(rows)
    top = torch.where(rows, idx, images.shape[-2]).min(1).values
    bottom = torch.where(rows, idx, -1).max(1).values
    return (bottom - top + 1).float()


def test_shrunk_digits_are_smaller_by_the_scale_and_centred():
    img = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    img[0, 0, 4:24, 10:18] = 255  # a 20-px tall bar
    ts = TensorImageSet(img, torch.tensor([1]), [str(i) for i in range(10)], "bar")
    small = shrunk_digits(ts, 0.875)
    assert small.images.shape == (1, 1, 28, 28) and small.labels.tolist() == [1]
    assert _extent(small.images).item() == pytest.approx(20 * 0.875, abs=1.0)
    mass = small.images[0, 0].float()
    cy = (mass.sum(1) * torch.arange(28)).sum() / mass.sum()
    assert cy.item() == pytest.approx(13.5, abs=0.6)  # the bar's centre stays in the middle
    assert mnistm_scale("mnistm") == 1.0 and mnistm_scale("mnistm-0.875") == 0.875 and mnistm_scale("mnist") is None
    with pytest.raises(CnnlabError, match="mnistm-SCALE"):
        mnistm_scale("mnistm-small")
    with pytest.raises(CnnlabError, match="scale in"):
        shrunk_digits(ts, 1.5)


def test_mnistm_at_0875_is_mnistm_of_smaller_digits():
    full = load_domains("mnist-embedded", "mnistm", photos="embedded", subset=200)
    small = load_domains("mnist-embedded", "mnistm-0.875", photos="embedded", subset=200)
    assert torch.equal(full.target_train.labels, small.target_train.labels)  # aligned with the same source digits
    assert small.target_train.images.shape[1:] == (3, 28, 28)
    assert "0.875" in small.photos
    # the digits' strong ink covers about 0.875² as many pixels
    ink_full = (full.source_train.images > 127).float().mean()
    ink_small = (shrunk_digits(small.source_train, 0.875).images > 127).float().mean()
    assert 0.6 < (ink_small / ink_full).item() < 0.9


def test_uci_digits_target_and_the_reverse_pair():
    uci = load_domains("mnist-embedded", "digits")
    assert uci.target_train.classes == uci.source_train.classes and len(uci.target_test) > 800
    rev = load_domains("mnistm", "mnist-embedded", photos="embedded")
    assert rev.source_train.images.shape[1] == 3 and rev.target_train.images.shape[1] == 1
    # source MNIST-M and target MNIST come from disjoint halves of the 4,000 embedded training digits
    assert len(rev.source_train) + len(rev.source_val) + len(rev.target_train) == 4000
    with pytest.raises(CnnlabError, match="at most one side can be MNIST-M"):
        load_domains("mnistm", "mnistm-0.875")
