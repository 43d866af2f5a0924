"""Beyond the course's cDCGAN: how y enters G and D, and spectral normalisation of D.

* :class:`CondBNGenerator`: y enters every BatchNorm of G as a per-class scale and shift
  (conditional BatchNorm, de Vries et al. 2017; used by SN-GAN/BigGAN), not as a concatenated
  one-hot branch. The course's widths: ConvT(nz→4ngf)·4×4 → 2ngf·8×8 → ngf·16×16 → nc·32×32.
* :class:`ProjectionDiscriminator`: D(x, y) = ψ(φ(x)) + ⟨e_y, Σ_hw φ(x)⟩ (Miyato & Koyama 2018):
  the class enters as an inner product between a learned class embedding and D's pooled features,
  instead of a one-hot map concatenated to the input.
* :func:`spectrally_normalised`: every conv/linear weight of D divided by its largest singular value
  (one power iteration per forward, Miyato et al. 2018); D's BatchNorm layers are removed, as in SN-GAN.

The parameter counts stay within 1.2× the course's cDCGAN (tests/test_generate_beyond.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from cnnlab.generate.networks import _blocks


class CondBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; γ_y and β_y come from class embeddings (γ starts at 1, β at 0)."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gamma = nn.Embedding(num_classes, num_features)
        self.beta = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


class CondBNGenerator(nn.Module):
    """z → ConvT(4,1,0) → [cBN, ReLU, ConvT ×2 up]… → ConvT → Tanh, y in every cBN."""

    def __init__(self, *, nz: int = 100, ngf: int = 128, nc: int = 1, size: int = 32, num_classes: int = 10):
        super().__init__()
        k = _blocks(size)
        self.nz, self.nc, self.size, self.num_classes = nz, nc, size, num_classes
        ch = [4 * ngf // 2 ** i for i in range(k)]  # 32×32: [4ngf, 2ngf, ngf]
        self.convs = nn.ModuleList([nn.ConvTranspose2d(nz, ch[0], 4, 1, 0, bias=False)]
                                   + [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False) for a, b in zip(ch, ch[1:])])
        self.norms = nn.ModuleList([CondBatchNorm2d(c, num_classes) for c in ch])
        self.out = nn.ConvTranspose2d(ch[-1], nc, 4, 2, 1, bias=False)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = z.view(z.shape[0], self.nz, 1, 1)
        y = y.long()
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h), y))
        return torch.tanh(self.out(h))


class ProjectionDiscriminator(nn.Module):
    """x → Conv(nc→2ndf) → doubling Conv+BN+LReLU blocks → φ (C×4×4); logit = Conv(4,1,0)(φ) + ⟨e_y, Σφ⟩.

    The course's cD widths (ndf = 64: 128×16×16 → 256×8×8 → 512×4×4) without the one-hot branch.
    """

    def __init__(self, *, ndf: int = 64, nc: int = 1, size: int = 32, num_classes: int = 10):
        super().__init__()
        k = _blocks(size)
        self.num_classes = num_classes
        ch = [2 * ndf * 2 ** i for i in range(k)]  # 32×32: [128, 256, 512]
        layers: list[nn.Module] = [nn.Conv2d(nc, ch[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for cin, cout in zip(ch, ch[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.psi = nn.Conv2d(ch[-1], 1, 4, 1, 0, bias=False)  # the unconditional term
        self.embed = nn.Embedding(num_classes, ch[-1])  # e_y
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("the projection discriminator needs the labels y")
        phi = self.features(x)  # B×C×4×4
        return self.psi(phi).view(-1) + (self.embed(y.long()) * phi.sum((2, 3))).sum(1)  # (B,)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.logits(x, y))


def spectrally_normalised(D: nn.Module) -> nn.Module:
    """D with every Conv2d/Linear weight spectrally normalised and every BatchNorm2d removed (in place).
    Class embeddings are normalised too (SN-GAN's projection D does the same)."""
    for name, child in list(D.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(D, name, nn.Identity())
        elif isinstance(child, (nn.Conv2d, nn.Linear, nn.Embedding)):
            setattr(D, name, spectral_norm(child))
        else:
            spectrally_normalised(child)
    return D
