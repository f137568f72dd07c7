"""Example: VideoMAE as a 3-class video detector.

`MCG-NJU/videomae-base` is a self-supervised video transformer with no head; the
kit adds a [real, synthetic, semisynthetic] head on its mean-pooled tokens
(random until fine-tuned). A checkpoint that is already fine-tuned for video
classification keeps its own head (re-headed only if its class count differs).

VideoMAE's position embeddings are fixed to 16 frames, so the wrapper maps any
incoming T onto 16 inside the graph (frame i ← floor((2i+1)·T/32)); at the
validator's T = 16 this is the identity.

Registered (in onnx_examples/sources.py) as `hf-videomae`:

    kit build video --model hf-videomae
    kit build video --model hf:MCG-NJU/videomae-base-finetuned-kinetics --name vmae-k400
    kit build video --model hf:./videomae-local                     # offline copy

As a script: python onnx_examples/huggingface_models/video_model.py --out /tmp/videomae
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discriminator.sources.huggingface import load_hf_backbone
from discriminator.wrapper import Backbone

HUB_ID = "MCG-NJU/videomae-base"


def hf_videomae(hub_id: str = HUB_ID, config: Any = None) -> Backbone:
    """`config` builds the same architecture with random weights and no download (tests, benchmarks)."""
    return load_hf_backbone(None if config is not None else hub_id, modality="video", task="classify", config=config)


if __name__ == "__main__":
    import argparse

    from discriminator.build import BuildRequest, build_detector

    parser = argparse.ArgumentParser(description="Build VideoMAE (3-class head) into a verified ONNX file.")
    parser.add_argument("--out", type=Path, default=Path("submissions/hf-videomae"))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    result = build_detector(BuildRequest(modality="video", model="hf-videomae", out_dir=args.out, force=args.force))
    print(f"wrote {result.onnx_path} (max |ONNX − PyTorch| = {result.max_abs_diff:.2e})")
