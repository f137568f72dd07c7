"""Example: a small custom CNN image detector, from nn.Module to a validator-ready ONNX file.

The network sees normalised float pixels (the kit's wrapper does uint8 → float and
mean/std inside the exported graph) and returns 3 logits, [real, synthetic,
semisynthetic]. Its first layer keeps full resolution, because generator traces
(upsampling grids, over-smooth texture) live in the highest frequencies.

Registered as `example-image`:

    kit build image --model example-image                 # random weights: a pipeline check
    kit build image --model example-image --weights w.safetensors

Run as a script to see the whole recipe in one place (build → verify → files):

    python onnx_examples/pytorch_models/image_model.py --out /tmp/example-image
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from discriminator.registry import register_source
from discriminator.wrapper import Backbone

#: Channels of the four stages; the first keeps full resolution, the others halve it.
DEFAULT_CHANNELS = (16, 32, 64, 128)


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class FrameEncoder(nn.Module):
    """Picture `[N,3,H,W]` (normalised) → feature vector `[N, channels[-1]]`, for any H and W."""

    def __init__(self, channels: tuple[int, ...] = DEFAULT_CHANNELS):
        super().__init__()
        layers, c_in = [], 3
        for i, c_out in enumerate(channels):
            layers.append(conv_bn_relu(c_in, c_out, stride=1 if i == 0 else 2))
            layers.append(conv_bn_relu(c_out, c_out, stride=1))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class CNNImageDetector(nn.Module):
    """FrameEncoder plus a linear head: normalised `[N,3,H,W]` → logits `[N, num_classes]`."""

    def __init__(self, channels: tuple[int, ...] = DEFAULT_CHANNELS, num_classes: int = 3, dropout: float = 0.1):
        super().__init__()
        self.encoder = FrameEncoder(channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.encoder.out_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@register_source("example-image", "image", "small custom CNN (4 stages, ~0.5M params), full-resolution first layer")
def example_image(weights: Path | None = None, channels: tuple[int, ...] = DEFAULT_CHANNELS, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    module = CNNImageDetector(tuple(channels))
    if weights is not None:
        from discriminator.sources.weights import load_weights_into

        load_weights_into(module, weights)
    return Backbone(
        module=module.eval(),
        input_kind="frames",
        head_trained=weights is not None,
        description="custom CNN image detector",
        notes=[] if weights else ["random weights (seeded): train with `kit train image` or pass --weights"],
        provenance={"weights": str(weights) if weights else "random init", "channels": list(channels)},
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
