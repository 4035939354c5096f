"""Residual Dense Network for image restoration (Zhang et al., TPAMI 2020), the brief's ``RDN (8 RDBs)`` teacher.

Structure (the image-restoration RDN: no upsampling, full resolution throughout)::

    F_-1 = SFE1(x)                          3x3 conv, channels -> G0
    F_0  = SFE2(F_-1)                       3x3 conv, G0 -> G0
    F_d  = RDB_d(F_{d-1}),  d = 1..D        residual dense blocks
    F_GF = GFF([F_1, ..., F_D])             1x1 conv D*G0 -> G0, then 3x3 conv G0 -> G0
    y    = x + Recon(F_GF + F_-1)           3x3 conv G0 -> channels; global residual on features and image

An RDB holds C dense layers (3x3 conv + ReLU, growth G, each fed the concatenation of the block input
and all earlier layer outputs: input channels G0, G0+G, ..., G0+(C-1)G), a 1x1 local feature fusion
back to G0 channels and a local residual (block output = block input + fusion). There is no
activation outside the dense layers, as in the authors' code.

Image residual (``y = x + net(x)``): the paper's restoration RDN learns the residual image; so does the
Keras RDN that the IDCN authors trained for the brief's comparison table. All convolutions have biases.

Configurations (parameters at 3 channels; layers = learned convolutions, i.e. ``nn.Conv2d`` modules,
``2 + D * (C + 1) + 3``):

* ``rdn``: D=8, C=9, G=64, G0=64: 85 layers, 13,714,051 parameters. The layer count matches the
  brief's table exactly (the IDCN authors' reproduction uses 9 dense layers per RDB, not the
  TPAMI paper's D=16, C=8). The table's "13.2M" is +3.9% from this in units of 10^6 and -0.9% in
  units of 2^20 (13.08 Mi); the IDCN row of the same table is exactly 2^20-based (see ``idcn.py``).
* ``rdn_s``: D=4, C=4, G=24, G0=48: 25 layers, 372,003 parameters, 371,232 MACs per pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.nets.registry import ModelSpec, register_model


class DenseLayer(nn.Module):
    """3x3 conv + ReLU whose output is concatenated to its input (the channel count grows by ``growth``)."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.relu(self.conv(x))], dim=1)


class ResidualDenseBlock(nn.Module):
    """C dense layers, 1x1 local feature fusion back to G0 channels, local residual learning.

    Args:
        g0: block input and output channels.
        growth: channels each dense layer adds (G).
        num_layers: dense layers in the block (C).
    """

    def __init__(self, g0: int, growth: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(DenseLayer(g0 + i * growth, growth) for i in range(num_layers)))
        self.fusion = nn.Conv2d(g0 + num_layers * growth, g0, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fusion(self.layers(x))


class RDN(nn.Module):
    """Residual Dense Network for restoration; output = input + predicted residual, same size as the input.

    Args:
        channels: image channels, 1 or 3.
        num_blocks: residual dense blocks (D).
        num_layers: dense layers per block (C).
        growth: growth rate (G).
        g0: feature channels between blocks (G0).
    """

    def __init__(
        self, channels: int = 3, *, num_blocks: int = 8, num_layers: int = 9, growth: int = 64, g0: int = 64
    ) -> None:
        super().__init__()
        if min(num_blocks, num_layers, growth, g0) < 1:
            raise ValueError(f"RDN sizes must be positive, got D={num_blocks} C={num_layers} G={growth} G0={g0}")
        self.sfe1 = nn.Conv2d(channels, g0, kernel_size=3, padding=1)
        self.sfe2 = nn.Conv2d(g0, g0, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(ResidualDenseBlock(g0, growth, num_layers) for _ in range(num_blocks))
        self.gff = nn.Sequential(
            nn.Conv2d(num_blocks * g0, g0, kernel_size=1),
            nn.Conv2d(g0, g0, kernel_size=3, padding=1),
        )
        self.reconstruct = nn.Conv2d(g0, channels, kernel_size=3, padding=1)

    def fixed_width_layers(self) -> list[nn.Module]:
        """Convolutions whose output width the architecture fixes: a channel pruner must ignore them.

        Only the image reconstruction (``channels`` outputs, added to the input).
        """
        return [self.reconstruct]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_shallow = self.sfe1(x)
        f = self.sfe2(f_shallow)
        block_outputs = []
        for block in self.blocks:
            f = block(f)
            block_outputs.append(f)
        f = self.gff(torch.cat(block_outputs, dim=1)) + f_shallow
        return x + self.reconstruct(f)


register_model(
    ModelSpec(
        "rdn",
        RDN,
        "teacher",
        3,
        "RDN (Zhang et al. 2020), 8 RDBs x 9 dense layers, G=G0=64: the brief's teacher",
        published=(85, "13.2M"),
        reference_params=13_714_051,
    )
)
register_model(
    ModelSpec(
        "rdn_s",
        RDN,
        "teacher",
        3,
        "small RDN (D=4, C=4, G=24, G0=48) trainable on a CPU",
        reference_params=372_003,
        kwargs={"num_blocks": 4, "num_layers": 4, "growth": 24, "g0": 48},
    )
)
