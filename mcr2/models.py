"""Feature extractors and the cross-entropy baseline head (FACTS.md, "Models and training").

- :class:`ResNet18Features`: ResNet18 for 28×28 digits with a 3×3 stride-1 stem, no max-pool,
  and the projection head Linear(512, 512) → BN → ReLU → Linear(512, d), rows L2-normalised.
- :class:`UNet`: per-pixel features for segmentation, 4 down-samplings (64 → 512 channels),
  bilinear up-sampling, 1×1 output conv to d channels (+2 background/foreground logits).
- :class:`ClassifierHead`: the CE baseline, linear (authors' code) or MLP (the report's wording),
  applied to vectors or per pixel with the same parameters.

Nothing here moves data to a device; everything works in ``channels_last`` too.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

__all__ = [
    "ResNet18Features",
    "UNet",
    "UNetOutput",
    "ClassifierHead",
    "count_parameters",
]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# ResNet18
# --------------------------------------------------------------------------------------------


class ResNet18Features(nn.Module):
    """ResNet18 feature map Z = f(x) for 28×28 digits (FACTS.md; report §"Classification").

    A 3×3 stride-1 stem replaces the ImageNet 7×7 stride-2 conv and max-pool, which would
    shrink a 28×28 digit to 7×7 before the first block. Stages of torchvision's
    :class:`BasicBlock` ×[2, 2, 2, 2] with widths w·(1, 2, 4, 8) and strides (1, 2, 2, 2)
    (28 → 28 → 14 → 7 → 4), global average pool, then the projection head
    Linear(8w, 8w) → BN → ReLU → Linear(8w, d). w = 64 is the paper's model; a small w is
    the CPU smoke profile.

    x: (B, in_channels, H, W) → Z: (B, feature_dim), unit-norm rows when ``normalize``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        feature_dim: int = 128,  # d, dimension of the MCR² features
        width: int = 64,  # w, channels of the first stage (64 in ResNet18)
        normalize: bool = True,  # project rows onto the unit sphere (MCR² needs it)
    ) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.normalize = normalize
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages = []
        inplanes = width
        for i, stride in enumerate((1, 2, 2, 2)):
            planes = width * 2**i
            stages.append(self._make_stage(inplanes, planes, stride, blocks=2))
            inplanes = planes
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.backbone_dim = inplanes  # 8w
        self.head = nn.Sequential(
            nn.Linear(inplanes, inplanes),
            nn.BatchNorm1d(inplanes),
            nn.ReLU(inplace=True),
            nn.Linear(inplanes, feature_dim),
        )
        self._init_weights()

    @staticmethod
    def _make_stage(inplanes: int, planes: int, stride: int, blocks: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(inplanes, planes, stride=stride, downsample=downsample)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's ResNet initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone output before the projection head, (B, 8w)."""
        x = self.stages(self.stem(x))  # (B, C, 28, 28) -> (B, 8w, 4, 4)
        return torch.flatten(self.pool(x), 1)  # (B, 8w, 4, 4) -> (B, 8w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.backbone(x))  # (B, 8w) -> (B, d)
        return F.normalize(z, dim=1) if self.normalize else z


# --------------------------------------------------------------------------------------------
# U-Net
# --------------------------------------------------------------------------------------------


class UNetOutput(NamedTuple):
    """Per-pixel features and, for the background variant, background/foreground logits."""

    features: torch.Tensor  # (B, d, H, W), unit-norm over dim 1 when normalised
    background_logits: torch.Tensor | None  # (B, 2, H, W), index 0 = background, 1 = foreground


class DoubleConv(nn.Sequential):
    """(conv3×3 → BN → ReLU) × 2."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        mid = mid_channels or out_channels
        super().__init__(
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net giving per-pixel features (FACTS.md; report §"Segmentation", Figure 5).

    The common "bilinear" U-Net variant: encoder channels w·2^i for i < depth (64 → 512 for
    w = 64, depth = 4), ``depth`` 2×2 max-pools, a bottleneck of w·2^(depth−1) channels
    (512, not 1024, because bilinear up-sampling keeps channels and the skip concatenation
    doubles them), decoder blocks DoubleConv(in, out, mid=in/2) halving channels back to w,
    then a 1×1 conv to d feature channels. Odd sizes (28 → 14 → 7 → 3 → 1) are handled by
    up-sampling straight to the skip's size, so any H, W ≥ 2^depth works.

    With ``background_head`` the output conv gives d + 2 channels; the last two are
    background/foreground logits (class 0 = background), never normalised.
    """

    def __init__(
        self,
        in_channels: int = 1,
        feature_dim: int = 128,  # d, channels of the per-pixel MCR² features
        width: int = 64,  # w, channels of the first encoder block
        depth: int = 4,  # number of 2×2 down-samplings
        background_head: bool = False,  # add 2 background/foreground logit channels
        normalize: bool = True,  # unit-norm features over the channel dim
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet depth must be >= 1, got {depth}")
        self.feature_dim = feature_dim
        self.depth = depth
        self.background_head = background_head
        self.normalize = normalize

        enc = [width * 2**i for i in range(depth)]  # (64, 128, 256, 512)
        self.inc = DoubleConv(in_channels, enc[0])
        # Down i: enc[i-1] -> enc[i]; the last one keeps enc[-1] (the bilinear bottleneck).
        self.downs = nn.ModuleList(
            DoubleConv(enc[i], enc[i + 1] if i + 1 < depth else enc[-1]) for i in range(depth)
        )
        ups = []
        prev = enc[-1]  # bottleneck channels
        for i in reversed(range(depth)):
            cat = prev + enc[i]  # up-sampled + skip
            out = enc[i - 1] if i > 0 else enc[0]
            ups.append(DoubleConv(cat, out, mid_channels=cat // 2))
            prev = out
        self.ups = nn.ModuleList(ups)
        self.out_conv = nn.Conv2d(enc[0], feature_dim + (2 if background_head else 0), kernel_size=1)

    def forward(self, x: torch.Tensor) -> UNetOutput:
        min_size = 2**self.depth
        if x.shape[-1] < min_size or x.shape[-2] < min_size:
            raise ValueError(
                f"UNet(depth={self.depth}) needs H, W >= {min_size}, got {tuple(x.shape[-2:])}"
            )
        skips = [self.inc(x)]  # (B, C, H, W) -> (B, w, H, W)
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))  # halves H, W (floor)
        h = skips.pop()  # bottleneck (B, w·2^(depth-1), H/2^depth, W/2^depth)
        for up in self.ups:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            h = up(torch.cat([skip, h], dim=1))  # (B, c_skip + c_h, h, w) -> (B, c_out, h, w)
        out = self.out_conv(h)  # (B, w, H, W) -> (B, d [+2], H, W)
        features = out[:, : self.feature_dim]
        logits = out[:, self.feature_dim :] if self.background_head else None
        if self.normalize:
            features = F.normalize(features, dim=1)
        return UNetOutput(features, logits)


# --------------------------------------------------------------------------------------------
# Cross-entropy baseline head
# --------------------------------------------------------------------------------------------


class ClassifierHead(nn.Module):
    """CE baseline head over the features (FACTS.md: linear layer / 1×1 conv; report: "MLP").

    ``hidden=None`` gives a linear layer; ``hidden=n`` gives Linear(d, n) → ReLU → Linear(n, k).
    Accepts vectors (B, d) → (B, k) or feature maps (B, d, H, W) → (B, k, H, W); on maps the
    same parameters are applied per pixel, which for the linear case is exactly a 1×1 conv.
    """

    def __init__(self, feature_dim: int, num_classes: int, hidden: int | None = None) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        if hidden is None:
            self.net: nn.Module = nn.Linear(feature_dim, num_classes)
        else:
            self.net = nn.Sequential(
                nn.Linear(feature_dim, hidden),
                nn.ReLU(inplace=True),
                nn.Linear(hidden, num_classes),
            )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            return self.net(z)  # (B, d) -> (B, k)
        if z.dim() == 4:
            # (B, d, H, W) -> (B, H, W, d) -> (B, H, W, k) -> (B, k, H, W)
            return self.net(z.movedim(1, -1)).movedim(-1, 1)
        raise ValueError(f"ClassifierHead expects (B, d) or (B, d, H, W), got shape {tuple(z.shape)}")
