"""Tiny learnable datasets and a deliberately over-confident toy model for the `kit train` / `kit calibrate` tests.

The classes differ in colour cast and in fine texture, so that a tiny CNN learns
them in a few steps: "real" pictures are a cool-tinted gradient with per-pixel
noise; "synthetic" ones are warm-tinted with a 2-pixel checkerboard;
"semisynthetic" ones are real with a synthetic patch in the centre. Files are PNG images or lossless FFV1 clips written with PyAV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tests.sim_helpers import image_bytes, write_video

MEDIA_TYPES = ("real", "synthetic", "semisynthetic")
COOL = np.array([-25.0, 0.0, 25.0])
WARM = np.array([25.0, 0.0, -25.0])


def picture(rng: np.random.Generator, media_type: str, height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 190) + rng.uniform(-30, 30) * (xs / width) + rng.uniform(-30, 30) * (ys / height)
    scene = base[..., None] + rng.uniform(-15, 15, 3)
    real = scene + COOL + rng.normal(0, 6, (height, width, 3))
    checker = ((xs.astype(int) + ys.astype(int)) % 2 * 2 - 1)[..., None] * rng.uniform(8, 14)
    fake = scene + WARM + checker
    if media_type == "real":
        out = real
    elif media_type == "synthetic":
        out = fake
    else:
        out = real.copy()
        top, left = height // 4, width // 4
        out[top:height - top, left:width - left] = fake[top:height - top, left:width - left]
    return np.clip(out, 0, 255).astype(np.uint8)


def write_image_split(root: Path, per_class: int, seed: int, height: int = 32, width: int = 40) -> Path:
    """`root/<media_type>/<name>/*.png`, `per_class` pictures per media type."""
    rng = np.random.default_rng(seed)
    for media_type in MEDIA_TYPES:
        folder = root / media_type / f"{media_type}-pics"
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"{i:03d}.png").write_bytes(image_bytes(picture(rng, media_type, height, width)))
    return root


def write_video_split(root: Path, per_class: int, seed: int, frames: int = 6, size: int = 32) -> Path:
    """`root/<media_type>/<name>/*.mkv`: short lossless clips (fewer frames than the validator's 16) of the same pictures."""
    rng = np.random.default_rng(seed)
    for media_type in MEDIA_TYPES:
        folder = root / media_type / f"{media_type}-clips"
        folder.mkdir(parents=True)
        for i in range(per_class):
            clip = [picture(rng, media_type, size, size) for _ in range(frames)]
            write_video(folder / f"{i:03d}.mkv", clip)
    return root


class ColourScore(nn.Module):
    """Logits [0, s, s] with s = GAIN · (mean red − mean blue) of the normalised input: over-confident by design."""

    input_kind = "frames"
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    GAIN = 60.0

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 3)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[0.0], [self.GAIN], [self.GAIN]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x[:, 0] - x[:, 2]).mean(dim=(1, 2))
        return self.head(score[:, None])


def colour_score() -> ColourScore:
    return ColourScore()


def write_colour_split(root: Path, per_class: int, seed: int, size: int = 24) -> Path:
    """Images whose red-minus-blue balance leans towards the class, with overlap: an honest 70–90 % task."""
    rng = np.random.default_rng(seed)
    for media_type, lean in (("real", -1.0), ("synthetic", 1.0)):
        folder = root / media_type / f"{media_type}-colour"
        folder.mkdir(parents=True)
        for i in range(per_class):
            shift = lean * 10 + rng.normal(0, 14)
            pixels = np.full((size, size, 3), 128.0)
            pixels[..., 0] += shift
            pixels[..., 2] -= shift
            pixels += rng.normal(0, 3, pixels.shape)
            (folder / f"{i:03d}.png").write_bytes(image_bytes(np.clip(pixels, 0, 255).astype(np.uint8)))
    return root


class TinyConvNet(nn.Module):
    """Conv → ReLU → mean pool → linear, 3 logits; no batch norm or dropout, so DDP computes what one process does."""

    input_kind = "frames"

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def tiny_cnn() -> TinyConvNet:
    torch.manual_seed(0)
    return TinyConvNet()
