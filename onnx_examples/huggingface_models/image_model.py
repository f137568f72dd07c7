"""Example: a Hugging Face image classifier (ResNet-50) re-headed to the validator's 3 classes.

`microsoft/resnet-50` is an ImageNet classifier with 1,000 classes; the kit loads it
with `from_pretrained`, swaps the head for [real, synthetic, semisynthetic] (random
until fine-tuned: `kit train image --model hf-resnet50`), takes mean/std from its
preprocessor config, and wraps it so the ONNX file takes uint8 `[B,3,224,224]`.

Registered (in onnx_examples/sources.py) as `hf-resnet50`; any other checkpoint works the same way:

    kit build image --model hf-resnet50
    kit build image --model hf:google/vit-base-patch16-224 --name vit
    kit build image --model hf:./my-finetuned-checkpoint      # a save_pretrained() folder

Offline? Download once elsewhere (`hf download microsoft/resnet-50 --local-dir resnet50`)
and pass `--model hf:resnet50`.

As a script: python onnx_examples/huggingface_models/image_model.py --out /tmp/resnet50
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discriminator.sources.huggingface import load_hf_backbone
from discriminator.wrapper import Backbone

HUB_ID = "microsoft/resnet-50"


def hf_resnet50(hub_id: str = HUB_ID, config: Any = None) -> Backbone:
    """`config` builds the same architecture with random weights and no download (tests, benchmarks)."""
    return load_hf_backbone(None if config is not None else hub_id, modality="image", task="classify", config=config)


if __name__ == "__main__":
    import argparse

    from discriminator.build import BuildRequest, build_detector

    parser = argparse.ArgumentParser(description="Build ResNet-50 (3-class head) into a verified ONNX file.")
    parser.add_argument("--out", type=Path, default=Path("submissions/hf-resnet50"))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    result = build_detector(BuildRequest(modality="image", model="hf-resnet50", out_dir=args.out, force=args.force))
    print(f"wrote {result.onnx_path} (max |ONNX − PyTorch| = {result.max_abs_diff:.2e})")
