"""Part D networks: the course's shapes at 32×32 and 64×64, the DCGAN init, the cDCGAN's inputs."""

import pytest
import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError
from cnnlab.generate.networks import CondDiscriminator, CondGenerator, Discriminator, Generator, build_gan

from test_generate_helpers import one_thread  # noqa: F401,E402  (autouse fixture)


def _shapes(seq: nn.Sequential, x: torch.Tensor) -> list[tuple]:
    """Output shape (C, H, W) after every activation of ``seq`` (one per block)."""
    out = []
    for m in seq:
        x = m(x)
        if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Tanh)) or m is seq[-1]:
            out.append(tuple(x.shape[1:]))
    return out


@pytest.mark.parametrize("size,expected", [
    (32, [(128, 4, 4), (64, 8, 8), (32, 16, 16), (1, 32, 32)]),  # PRACTICAL.md: ngf·4×4×4 → … → 1×32×32
    (64, [(256, 4, 4), (128, 8, 8), (64, 16, 16), (32, 32, 32), (1, 64, 64)]),  # one more block
])
def test_generator_block_shapes(size, expected):
    G = Generator(nz=100, ngf=32, size=size)
    assert _shapes(G.main, torch.randn(2, 100, 1, 1)) == expected
    assert G(torch.randn(2, 100)).shape == (2, 1, size, size)


@pytest.mark.parametrize("size,expected", [
    (32, [(32, 16, 16), (64, 8, 8), (128, 4, 4), (1, 1, 1)]),  # ndf×16×16 → 2ndf×8×8 → 4ndf×4×4 → 1
    (64, [(32, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4), (1, 1, 1)]),
])
def test_discriminator_block_shapes(size, expected):
    D = Discriminator(ndf=32, size=size)
    assert _shapes(D.main, torch.randn(2, 1, size, size)) == expected
    p = D(torch.randn(2, 1, size, size))
    assert p.shape == (2,) and ((p > 0) & (p < 1)).all()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.main[:2])  # no BN on the first block


@pytest.mark.parametrize("size", [32, 64])
def test_conditional_generator_shapes(size):
    G = CondGenerator(nz=100, ngf=128, size=size)
    z, y = torch.randn(3, 100), torch.tensor([0, 5, 9])
    assert _shapes(G.z_branch, z.view(3, 100, 1, 1)) == [(256, 4, 4)]
    assert _shapes(G.y_branch, torch.eye(10)[y].view(3, 10, 1, 1)) == [(256, 4, 4)]
    blocks = _shapes(G.main, torch.randn(3, 512, 4, 4))
    expected = [(256, 8, 8), (128, 16, 16), (1, 32, 32)] if size == 32 else \
        [(256, 8, 8), (128, 16, 16), (64, 32, 32), (1, 64, 64)]
    assert blocks == expected
    assert G(z, y).shape == (3, 1, size, size)


@pytest.mark.parametrize("size", [32, 64])
def test_conditional_discriminator_shapes(size):
    D = CondDiscriminator(ndf=64, size=size)
    x, y = torch.randn(3, 1, size, size), torch.tensor([1, 2, 3])
    half = size // 2
    assert _shapes(D.x_branch, x) == [(64, half, half)]
    assert _shapes(D.y_branch, torch.ones(3, 10, size, size)) == [(64, half, half)]
    blocks = _shapes(D.main, torch.randn(3, 128, half, half))
    expected = [(256, 8, 8), (512, 4, 4), (1, 1, 1)] if size == 32 else [(256, 16, 16), (512, 8, 8), (1024, 4, 4), (1, 1, 1)]
    assert blocks == expected
    assert D(x, y).shape == (3,)
    with pytest.raises(ValueError):
        D(x)  # y is required when D is conditional


def test_discriminator_sees_the_label():
    D = CondDiscriminator(ndf=8)
    x = torch.randn(4, 1, 32, 32)
    assert not torch.allclose(D.logits(x, torch.zeros(4, dtype=torch.long)), D.logits(x, torch.ones(4, dtype=torch.long)))
    D_no_y = CondDiscriminator(ndf=8, use_y=False)
    assert D_no_y.y_branch is None and D_no_y(x).shape == (4,)
    assert torch.equal(D_no_y.logits(x, torch.zeros(4, dtype=torch.long)), D_no_y.logits(x, torch.ones(4, dtype=torch.long)))


def test_dcgan_init_statistics():
    G, D = build_gan("dcgan", ngf=64, ndf=64, generator=torch.Generator().manual_seed(0))
    convs = torch.cat([m.weight.flatten() for m in list(G.modules()) + list(D.modules())
                       if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    bns = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(convs.mean().item()) < 1e-3 and abs(convs.std().item() - 0.02) < 1e-3
    assert abs(bns.mean().item() - 1.0) < 5e-3 and abs(bns.std().item() - 0.02) < 5e-3
    assert all((m.bias == 0).all() for m in G.modules() if isinstance(m, nn.BatchNorm2d))


def test_init_is_seeded_and_pytorch_init_differs():
    a, _ = build_gan("dcgan", generator=torch.Generator().manual_seed(3))
    b, _ = build_gan("dcgan", generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    torch.manual_seed(0)
    c, _ = build_gan("dcgan", init="pytorch")
    w = c.main[0].weight
    assert abs(w.std().item() - 0.02) > 0.005  # not N(0, 0.02)
    assert all((m.weight == 1).all() for m in c.modules() if isinstance(m, nn.BatchNorm2d))  # PyTorch's BN default


def test_build_gan_errors():
    with pytest.raises(CnnlabError, match="32 or 64"):
        build_gan("dcgan", size=48)
    with pytest.raises(CnnlabError, match="dcgan, cdcgan"):
        build_gan("vae")
    with pytest.raises(CnnlabError, match="--init"):
        build_gan("dcgan", init="xavier")


def test_rgb_networks():
    G, D = build_gan("dcgan", nc=3, ngf=8, ndf=8)
    x = G(torch.randn(2, 100))
    assert x.shape == (2, 3, 32, 32) and D(x).shape == (2,)
    assert x.abs().max() <= 1  # Tanh range
