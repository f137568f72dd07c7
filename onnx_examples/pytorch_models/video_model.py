"""Example: a custom video detector — a 2D per-frame CNN with temporal aggregation.

The robust design when a 3D backbone is not available or not exportable: encode
each frame with a 2D CNN, then pool over time twice — the mean of the frame
features (what is in the frames) and the mean absolute change between consecutive
frames (how they move; generators flicker). Both pools work for any number of
frames, so the ONNX file accepts any T.

The backbone looks at 8 frames. The kit's wrapper maps whatever the validator
sends (16 by default) onto those 8 inside the graph: frame i of 8 is incoming
frame floor((2i+1)·T/16), i.e. the odd frames 1, 3, …, 15 of a 16-frame clip.

Registered as `example-video`:

    kit build video --model example-video
    kit build video --model example-video --weights w.safetensors

As a script: python onnx_examples/pytorch_models/video_model.py --out /tmp/example-video
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from discriminator.registry import register_source
from discriminator.wrapper import Backbone
from onnx_examples.pytorch_models.image_model import DEFAULT_CHANNELS, FrameEncoder

NATIVE_FRAMES = 8


class FrameCNNVideoDetector(nn.Module):
    """Normalised clip `[B,T,3,H,W]` (T ≥ 2) → logits `[B, num_classes]`."""

    def __init__(self, channels: tuple[int, ...] = DEFAULT_CHANNELS, num_classes: int = 3, dropout: float = 0.1):
        super().__init__()
        self.encoder = FrameEncoder(channels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * self.encoder.out_dim, num_classes))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        batch = clip.shape[0]
        feats = self.encoder(clip.flatten(0, 1))
        feats = feats.reshape(batch, -1, feats.shape[-1])  # [B, T, D]; T taken from the runtime shape
        content = feats.mean(dim=1)
        motion = (feats[:, 1:] - feats[:, :-1]).abs().mean(dim=1)  # the wrapper always feeds NATIVE_FRAMES ≥ 2
        return self.head(torch.cat([content, motion], dim=1))


@register_source("example-video", "video", "custom 2D per-frame CNN + temporal mean/motion pooling, 8 native frames",
                 native_frames=NATIVE_FRAMES)
def example_video(channels: tuple[int, ...] = DEFAULT_CHANNELS, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    module = FrameCNNVideoDetector(tuple(channels))
    return Backbone(
        module=module.eval(),
        input_kind="clip",
        native_frames=NATIVE_FRAMES,
        head_trained=False,
        description="custom per-frame CNN video detector",
        provenance={"weights": "random init (seeded)", "channels": list(channels)},
    )


if __name__ == "__main__":
    import argparse

    from discriminator.build import BuildRequest, build_detector

    parser = argparse.ArgumentParser(description="Build the example video detector into a verified ONNX file.")
    parser.add_argument("--out", type=Path, default=Path("submissions/example-video"))
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    result = build_detector(BuildRequest(modality="video", model="example-video", weights=args.weights, out_dir=args.out, force=args.force))
    print(f"wrote {result.onnx_path} (max |ONNX − PyTorch| = {result.max_abs_diff:.2e})")
