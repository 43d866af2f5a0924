"""The shared training loop: exact resume, clean stop on divergence, determinism."""

import pytest
import torch
import torch.nn as nn

from cnnlab.errors import TrainingDiverged
from cnnlab.train import train_classifier


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
    return x, (x.float().mean((1, 2, 3)) > 127).long()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def pre(x):
    return x.float() / 255


def test_resume_equals_an_uninterrupted_run(tmp_path):
    x, y = _data()
    full = _model()
    train_classifier(full, x, y, preprocess=pre, epochs=4, batch_size=8, seed=3)
    part = _model()
    ck = tmp_path / "ck.pt"
    train_classifier(part, x, y, preprocess=pre, epochs=2, batch_size=8, seed=3, checkpoint=ck)
    torch.manual_seed(999)  # disturb the global RNG: the checkpoint must restore it
    resumed = _model()
    st = train_classifier(resumed, x, y, preprocess=pre, epochs=4, batch_size=8, seed=3, checkpoint=ck, resume=True)
    assert st.epoch == 4 and len(st.history) == 4
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_divergence_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = _data()
    model = _model()
    ck = tmp_path / "ck.pt"
    train_classifier(model, x, y, preprocess=pre, epochs=1, batch_size=8, checkpoint=ck)
    good = ck.read_bytes()

    def poisoned(batch):
        return pre(batch) * float("nan")

    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 2.*last good checkpoint is kept"):
        train_classifier(model, x, y, preprocess=poisoned, epochs=3, batch_size=8, checkpoint=ck, resume=True)
    assert ck.read_bytes() == good
