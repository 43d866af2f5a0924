"""The course's GANs: DCGAN (Radford et al. 2016) and the conditional DCGAN (Mirza & Osindero 2014).

Shapes follow PRACTICAL.md Part D at 32×32; a 64×64 model has one more stride-2 block in each
network (D-Q5), like pytorch/examples' DCGAN. Both discriminators end with a Sigmoid in ``forward``
(the course's D outputs a probability) and expose ``logits`` so the losses can use the numerically
stable ``binary_cross_entropy_with_logits`` (same value as BCE on the Sigmoid, no log(0)).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from cnnlab.errors import CnnlabError

SIZES = (32, 64)  # image sizes the networks are built for (32: the course; 64: one more block)


def _blocks(size: int) -> int:
    """Stride-2 blocks between 4×4 and ``size``×``size`` (32 → 3, 64 → 4)."""
    if size not in SIZES:
        raise CnnlabError(f"--size {size}: the DCGAN networks are built for {' or '.join(map(str, SIZES))} pixels")
    return int(math.log2(size // 4))


def _up(cin: int, cout: int) -> list[nn.Module]:  # ×2 spatially
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


def _down(cin: int, cout: int, bn: bool = True) -> list[nn.Module]:  # ÷2 spatially
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return layers + [nn.LeakyReLU(0.2, True)]


# --------------------------------------------------------------------------- DCGAN
class Generator(nn.Module):
    """z (nz×1×1) → ConvT(4,1,0) → ngf·2^(k−1)×4×4 → … → ngf×size/2 → nc×size×size, Tanh.

    At 32×32 (k = 3 blocks): ngf·4×4×4 → ngf·2×8×8 → ngf×16×16 → nc×32×32, BN+ReLU between.
    """

    def __init__(self, *, nz: int = 100, ngf: int = 32, nc: int = 1, size: int = 32):
        super().__init__()
        k = _blocks(size)
        self.nz, self.nc, self.size = nz, nc, size
        ch = [ngf * 2 ** i for i in reversed(range(k))]  # 32×32: [4ngf, 2ngf, ngf]
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, ch[0], 4, 1, 0, bias=False), nn.BatchNorm2d(ch[0]),
                                   nn.ReLU(True)]  # ch[0]×4×4
        for cin, cout in zip(ch, ch[1:]):
            layers += _up(cin, cout)  # doubles H, W
        layers += [nn.ConvTranspose2d(ch[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]  # nc×size×size in [−1, 1]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(z.view(z.shape[0], self.nz, 1, 1))


class Discriminator(nn.Module):
    """nc×size×size → ndf×size/2 (no BN) → … → ndf·2^(k−1)×4×4 → Conv(4,1,0) → 1 → Sigmoid."""

    def __init__(self, *, ndf: int = 32, nc: int = 1, size: int = 32):
        super().__init__()
        k = _blocks(size)
        ch = [ndf * 2 ** i for i in range(k)]  # 32×32: [ndf, 2ndf, 4ndf]
        layers = _down(nc, ch[0], bn=False)  # ndf × size/2
        for cin, cout in zip(ch, ch[1:]):
            layers += _down(cin, cout)  # halves H, W
        layers.append(nn.Conv2d(ch[-1], 1, 4, 1, 0, bias=False))  # 1×1×1
        self.main = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(x).view(-1)  # (B,)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(x, y))


# --------------------------------------------------------------------------- conditional DCGAN
def one_hot(y: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    return torch.nn.functional.one_hot(y.long(), num_classes).float()  # (B, num_classes)


class CondGenerator(nn.Module):
    """cG: z branch ConvT(nz→2ngf, 4,1,0)+BN+ReLU and y branch ConvT(10→2ngf, 4,1,0)+BN+ReLU,
    concatenated (4ngf×4×4) → halving ConvT blocks → ConvT(→nc) → Tanh.

    Course (ngf = 128, 32×32): 256 ‖ 256 = 512×4×4 → 256×8×8 → 128×16×16 → 1×32×32.
    """

    def __init__(self, *, nz: int = 100, ngf: int = 128, nc: int = 1, size: int = 32, num_classes: int = 10):
        super().__init__()
        k = _blocks(size)
        self.nz, self.nc, self.size, self.num_classes = nz, nc, size, num_classes
        self.z_branch = nn.Sequential(nn.ConvTranspose2d(nz, 2 * ngf, 4, 1, 0, bias=False), nn.BatchNorm2d(2 * ngf),
                                      nn.ReLU(True))  # 2ngf×4×4
        self.y_branch = nn.Sequential(nn.ConvTranspose2d(num_classes, 2 * ngf, 4, 1, 0, bias=False),
                                      nn.BatchNorm2d(2 * ngf), nn.ReLU(True))  # 2ngf×4×4
        ch = [4 * ngf // 2 ** i for i in range(k)]  # 32×32: [4ngf, 2ngf, ngf]
        layers: list[nn.Module] = []
        for cin, cout in zip(ch, ch[1:]):
            layers += _up(cin, cout)
        layers += [nn.ConvTranspose2d(ch[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        yv = one_hot(y, self.num_classes).view(-1, self.num_classes, 1, 1)
        h = torch.cat([self.z_branch(z.view(z.shape[0], self.nz, 1, 1)), self.y_branch(yv)], 1)  # 4ngf×4×4
        return self.main(h)


class CondDiscriminator(nn.Module):
    """cD: x branch Conv(nc→ndf, 4,2,1)+LReLU and y branch (one-hot expanded to 10×size×size)
    Conv(10→ndf, 4,2,1)+LReLU, concatenated (2ndf) → doubling Conv+BN+LReLU blocks → Conv(1, 4,1,0)
    → Sigmoid. Course (ndf = 64, 32×32): 64 ‖ 64 = 128×16×16 → 256×8×8 → 512×4×4 → 1.

    ``use_y=False`` removes y from D (D-Q7): the x branch alone feeds the rest (ndf channels).
    """

    def __init__(self, *, ndf: int = 64, nc: int = 1, size: int = 32, num_classes: int = 10, use_y: bool = True):
        super().__init__()
        k = _blocks(size)
        self.num_classes, self.use_y = num_classes, use_y
        self.x_branch = nn.Sequential(*_down(nc, ndf, bn=False))  # ndf × size/2
        self.y_branch = nn.Sequential(*_down(num_classes, ndf, bn=False)) if use_y else None
        ch = [(2 if use_y else 1) * ndf] + [ndf * 2 ** (i + 1) for i in range(1, k)]  # 32×32: [128, 256, 512]
        layers: list[nn.Module] = []
        for cin, cout in zip(ch, ch[1:]):
            layers += _down(cin, cout)
        layers.append(nn.Conv2d(ch[-1], 1, 4, 1, 0, bias=False))  # 1×1×1
        self.main = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.x_branch(x)
        if self.y_branch is not None:
            if y is None:
                raise ValueError("the conditional discriminator needs the labels y")
            ymap = one_hot(y, self.num_classes)[:, :, None, None].expand(-1, -1, *x.shape[-2:])  # 10×H×W
            h = torch.cat([h, self.y_branch(ymap)], 1)
        return self.main(h).view(-1)  # (B,)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(x, y))


# --------------------------------------------------------------------------- init and building
@torch.no_grad()
def dcgan_init(module: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """The DCGAN paper's init: conv weights N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.weight.normal_(0.0, 0.02, generator=generator)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d) and m.affine:  # conditional BatchNorm: no affine of its own
            m.weight.normal_(1.0, 0.02, generator=generator)
            m.bias.zero_()
    return module


MODELS = ("dcgan", "cdcgan")
COND_ARCHS = ("concat", "projection")  # the course's one-hot branches, or cBN in G + projection D


def build_gan(model: str = "dcgan", *, nz: int = 100, ngf: int | None = None, ndf: int | None = None, nc: int = 1,
              size: int = 32, num_classes: int = 10, init: str = "dcgan", cond_d: bool = True,
              cond_arch: str = "concat", spectral_norm: bool = False,
              generator: torch.Generator | None = None) -> tuple[nn.Module, nn.Module]:
    """(G, D) for ``model`` with the course's widths unless ``ngf``/``ndf`` are given.
    ``init``: ``"dcgan"`` (N(0, 0.02)) or ``"pytorch"`` (PyTorch's default Kaiming-uniform init, D-Q5).
    ``cond_arch`` (cDCGAN): ``"concat"`` (the course) or ``"projection"`` (cBN in G, projection D);
    ``spectral_norm``: D's weights spectrally normalised and its BatchNorms removed (after the init)."""
    from cnnlab.generate import conditioning

    if cond_arch not in COND_ARCHS:
        raise CnnlabError(f"--cond-arch {cond_arch!r}: choose one of {', '.join(COND_ARCHS)}")
    if model == "cdcgan" and cond_arch == "projection":
        if not cond_d:
            raise CnnlabError("--cond-arch projection with --no-y-in-d: a projection D is built on y; use concat")
        G = conditioning.CondBNGenerator(nz=nz, ngf=ngf or 128, nc=nc, size=size, num_classes=num_classes)
        D = conditioning.ProjectionDiscriminator(ndf=ndf or 64, nc=nc, size=size, num_classes=num_classes)
    elif model == "dcgan":
        G = Generator(nz=nz, ngf=ngf or 32, nc=nc, size=size)
        D = Discriminator(ndf=ndf or 32, nc=nc, size=size)
    elif model == "cdcgan":
        G = CondGenerator(nz=nz, ngf=ngf or 128, nc=nc, size=size, num_classes=num_classes)
        D = CondDiscriminator(ndf=ndf or 64, nc=nc, size=size, num_classes=num_classes, use_y=cond_d)
    else:
        raise CnnlabError(f"--model {model!r}: choose one of {', '.join(MODELS)}")
    if init == "dcgan":
        dcgan_init(G, generator=generator)
        dcgan_init(D, generator=generator)
    elif init != "pytorch":
        raise CnnlabError(f"--init {init!r}: choose dcgan (N(0, 0.02)) or pytorch (the framework's default)")
    if spectral_norm:
        conditioning.spectrally_normalised(D)
    return G, D


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
