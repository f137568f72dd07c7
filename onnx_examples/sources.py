"""The built-in detector sources `kit models` lists and `kit build --model NAME` builds.

Each row names the function that builds the source; its module (and torch with it)
is imported only when that source is built, so listing stays instant. A new example
is one more row here plus its module.
"""

from __future__ import annotations

from discriminator.registry import register_source

register_source("example-image", "image", "small custom CNN on RGB + fixed high-pass residual, mean+max pooling",
                factory="onnx_examples.pytorch_models.image_model:example_image")
register_source("example-video", "video", "custom 2D per-frame CNN + temporal mean/motion pooling, 8 native frames",
                factory="onnx_examples.pytorch_models.video_model:example_video", native_frames=8)
register_source("hf-resnet50", "image", "Hugging Face ResNet-50, re-headed to 3 classes",
                factory="onnx_examples.huggingface_models.image_model:hf_resnet50", weights="hub: microsoft/resnet-50")
register_source("hf-videomae", "video", "VideoMAE (ViT-B, 16 native frames), 3-class head",
                factory="onnx_examples.huggingface_models.video_model:hf_videomae", weights="hub: MCG-NJU/videomae-base",
                native_frames=16)
