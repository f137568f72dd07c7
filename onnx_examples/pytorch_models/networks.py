"""The example detectors' networks, in plain PyTorch and nothing else.

This file is self-contained on purpose: `kit build --format bundle` copies it
verbatim into the bundle's `model.py`, which the SN34 evaluator imports in a
sandbox that has torch but not this kit. So it imports only torch, uses no
`from __future__` import (not on the evaluator's allowlist), and keeps its type
hints to what Python evaluates at import time everywhere. `image_model.py` and
`video_model.py` register these networks as kit sources.
"""

import torch
import torch.nn.functional as F
from torch import nn

#: Channels of the four stages; the first keeps full resolution, the others halve it.
DEFAULT_CHANNELS = (16, 32, 64, 128)


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class HighPassResidual(nn.Module):
    """Fixed (untrained) per-channel filter: each pixel minus the mean of its 3×3 neighbourhood."""

    def __init__(self) -> None:
        super().__init__()
        kernel = -torch.ones(3, 3) / 9.0
        kernel[1, 1] += 1.0
        # Not a parameter and not in the state dict: it is part of the architecture, like an activation.
        self.register_buffer("kernel", kernel.expand(3, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel, padding=1, groups=3)


class FrameEncoder(nn.Module):
    """Picture `[N,3,H,W]` (normalised) → feature vector `[N, 2·channels[-1]]` (mean and max pooled), any H, W."""

    def __init__(self, channels: tuple[int, ...] = DEFAULT_CHANNELS):
        super().__init__()
        self.high_pass = HighPassResidual()
        layers, c_in = [], 6  # RGB + its high-pass residual
        for i, c_out in enumerate(channels):
            layers.append(conv_bn_relu(c_in, c_out, stride=2))
            layers.append(conv_bn_relu(c_out, c_out, stride=1))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = 2 * c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(torch.cat([x, self.high_pass(x)], dim=1))
        return torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)


class CNNImageDetector(nn.Module):
    """FrameEncoder plus a linear head: normalised `[N,3,H,W]` → logits `[N, num_classes]`."""

    def __init__(self, channels: tuple[int, ...] = DEFAULT_CHANNELS, num_classes: int = 3, dropout: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.encoder = FrameEncoder(channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.out_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class FrameCNNVideoDetector(nn.Module):
    """Normalised clip `[B,T,3,H,W]` (T ≥ 2) → logits `[B, num_classes]`."""

    def __init__(self, channels: tuple[int, ...] = DEFAULT_CHANNELS, num_classes: int = 3, dropout: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.encoder = FrameEncoder(channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * self.encoder.out_dim, num_classes))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        batch = clip.shape[0]
        feats = self.encoder(clip.flatten(0, 1))
        feats = feats.reshape(batch, -1, feats.shape[-1])  # [B, T, D]; T taken from the runtime shape
        content = feats.mean(dim=1)
        motion = (feats[:, 1:] - feats[:, :-1]).abs().mean(dim=1)  # the wrapper always feeds NATIVE_FRAMES ≥ 2
        return self.head(torch.cat([content, motion], dim=1))
