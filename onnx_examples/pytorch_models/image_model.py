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

Registered (in onnx_examples/sources.py) as `example-image`:

    kit build image --model example-image                 # random weights: a pipeline check
    kit build image --model example-image --weights w.safetensors

Run as a script to see the whole recipe in one place (build → verify → files):

    python onnx_examples/pytorch_models/image_model.py --out /tmp/example-image
"""

from __future__ import annotations

from pathlib import Path

import torch

from discriminator.wrapper import Backbone, BundleRecipe
from onnx_examples.pytorch_models import networks
from onnx_examples.pytorch_models.networks import DEFAULT_CHANNELS, CNNImageDetector

def network_recipe(build: str) -> BundleRecipe:
    """The bundle recipe for a network defined in networks.py (embedded verbatim in model.py)."""
    path = Path(networks.__file__)
    return BundleRecipe(code=path.read_text(encoding="utf-8"), build=build, origin="onnx_examples/pytorch_models/networks.py")


def example_image(channels: tuple[int, ...] = DEFAULT_CHANNELS, seed: int = 0, num_classes: int = 3) -> Backbone:
    torch.manual_seed(seed)
    module = CNNImageDetector(tuple(channels), num_classes=num_classes)
    return Backbone(
        module=module.eval(),
        input_kind="frames",
        head_trained=False,
        description="custom CNN image detector",
        provenance={"weights": "random init (seeded)", "channels": list(channels)},
        recipe=network_recipe(f"CNNImageDetector(channels={tuple(channels)!r}, num_classes={module.num_classes})"),
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
