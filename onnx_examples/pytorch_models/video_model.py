"""Example: a custom video detector — a 2D per-frame CNN with temporal aggregation.

The robust design when a 3D backbone is not available or not exportable: encode
each frame with a 2D CNN, then pool over time twice — the mean of the frame
features (what is in the frames) and the mean absolute change between consecutive
frames (how they move; generators flicker). Both pools work for any number of
frames, so the ONNX file accepts any T.

The backbone looks at 8 frames. The kit's wrapper maps whatever the validator
sends (16 by default) onto those 8 inside the graph: frame i of 8 is incoming
frame floor((2i+1)·T/16), i.e. the odd frames 1, 3, …, 15 of a 16-frame clip.

Registered (in onnx_examples/sources.py) as `example-video`:

    kit build video --model example-video
    kit build video --model example-video --weights w.safetensors

As a script: python onnx_examples/pytorch_models/video_model.py --out /tmp/example-video
"""

from __future__ import annotations

from pathlib import Path

import torch

from discriminator.wrapper import Backbone
from onnx_examples.pytorch_models.image_model import network_recipe
from onnx_examples.pytorch_models.networks import DEFAULT_CHANNELS, FrameCNNVideoDetector

#: Frames the video network looks at; the wrapper maps any incoming count onto these.
NATIVE_FRAMES = 8

def example_video(channels: tuple[int, ...] = DEFAULT_CHANNELS, seed: int = 0, num_classes: int = 3) -> Backbone:
    torch.manual_seed(seed)
    module = FrameCNNVideoDetector(tuple(channels), num_classes=num_classes)
    return Backbone(
        module=module.eval(),
        input_kind="clip",
        native_frames=NATIVE_FRAMES,
        head_trained=False,
        description="custom per-frame CNN video detector",
        provenance={"weights": "random init (seeded)", "channels": list(channels)},
        recipe=network_recipe(f"FrameCNNVideoDetector(channels={tuple(channels)!r}, num_classes={module.num_classes})"),
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
