"""Example: a small custom CNN image detector, from nn.Module to a validator-ready ONNX file.

The network sees normalised float pixels (the kit's wrapper does uint8 → float and
mean/std inside the exported graph) and returns 3 logits, [real, synthetic,
semisynthetic]. Generator traces (upsampling grids, over-smooth texture, missing
sensor noise) live in the highest frequencies, so the network sees two things:
the picture, and a fixed high-pass residual of it (each pixel minus its 3×3 local
mean, the classic first layer of image-forensics detectors), computed at full
resolution. The first learned layer already strides by 2 (its 3×3 kernels still see
every full-resolution pixel), which makes 224×224 affordable on a CPU. Features are
pooled by mean (how much trace there is) and by max (a trace confined to a pasted
region still shows).

Registered as `example-image`:

    kit build image --model example-image                 # random weights: a pipeline check
    kit build image --model example-image --weights w.safetensors

Run as a script to see the whole recipe in one place (build → verify → files):

    python onnx_examples/pytorch_models/image_model.py --out /tmp/example-image
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from discriminator.registry import register_source
from discriminator.wrapper import Backbone

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
        self.encoder = FrameEncoder(channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.out_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@register_source("example-image", "image", "small custom CNN on RGB + fixed high-pass residual, mean+max pooling")
def example_image(channels: tuple[int, ...] = DEFAULT_CHANNELS, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    module = CNNImageDetector(tuple(channels))
    return Backbone(
        module=module.eval(),
        input_kind="frames",
        head_trained=False,
        description="custom CNN image detector",
        provenance={"weights": "random init (seeded)", "channels": list(channels)},
    )


if __name__ == "__main__":
    import argparse

    from discriminator.build import BuildRequest, build_detector

    parser = argparse.ArgumentParser(description="Build the example image detector into a verified ONNX file.")
    parser.add_argument("--out", type=Path, default=Path("submissions/example-image"))
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    result = build_detector(BuildRequest(modality="image", model="example-image", weights=args.weights, out_dir=args.out, force=args.force))
    print(f"wrote {result.onnx_path} (max |ONNX − PyTorch| = {result.max_abs_diff:.2e})")
