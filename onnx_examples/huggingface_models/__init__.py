"""Hugging Face detectors: ResNet-50 for images, VideoMAE for video."""
