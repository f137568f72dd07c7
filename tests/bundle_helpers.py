"""Tiny hand-written safetensors bundles for the check and package tests, each breakable in one named way.

A bundle here is real: a model_config.yaml, a model.py with a small nn.Module and a
`load_model(weights_path, num_classes=3, **kwargs)`, and weights written with
safetensors.torch.save_file. The detector averages the raw pixels per channel and
applies a fixed linear head, so very different inputs give clearly different logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

SIZE = 32
FRAMES = 8
#: A 3-class head whose rows differ, so the probabilities move with the input.
HEAD = torch.tensor([[3.0, -2.0, 1.0], [-1.0, 2.0, -3.0], [2.0, 1.0, -2.0]])

MODEL_PY = '''"""A tiny detector: channel means of the raw uint8 pixels through a linear head."""

import torch
from torch import nn
from safetensors.torch import load_file
{imports}

class TinyDetector(nn.Module):
    def __init__(self, num_outputs: int, video: bool):
        super().__init__()
        self.video = video
        self.head = nn.Linear(3, num_outputs)

    def forward(self, x):
        x = x.to(self.head.weight.dtype) / 255.0 - 0.5
        features = x.mean(dim=(1, 3, 4) if self.video else (2, 3))
{forward}


def load_model(weights_path, num_classes=3, **kwargs):
{load}
    state = load_file(weights_path)
    model = TinyDetector(state["head.weight"].shape[0], video=kwargs.get("video", False))
    model.load_state_dict(state, strict=True)
    return model
'''
#: The working forward and load_model bodies (indented into the template).
FORWARD = "        return self.head(features)"
LOAD = "    pass"


def model_source(forward: str = FORWARD, load: str = LOAD, imports: str = "", signature: str | None = None) -> str:
    source = MODEL_PY.format(imports=imports, forward=forward, load=load)
    if signature is not None:
        source = source.replace("def load_model(weights_path, num_classes=3, **kwargs):", f"def load_model({signature}):")
        source = source.replace('kwargs.get("video", False)', "False")
    return source


def bundle_config(modality: str = "image", **changes: Any) -> dict:
    """model_config.yaml as a dict; `changes` replace top-level keys, `preprocessing`/`model` are merged (None deletes)."""
    config: dict[str, Any] = {
        "name": "tiny", "version": "1", "modality": modality, "dtype": "float32",
        "preprocessing": {"resize": [SIZE, SIZE], **({"num_frames": FRAMES} if modality == "video" else {})},
        "model": {"num_classes": 3, "weights_file": "model.safetensors", **({"video": True} if modality == "video" else {})},
    }
    for key, value in changes.items():
        if key in ("preprocessing", "model") and isinstance(value, dict):
            for inner, inner_value in value.items():
                if inner_value is None:
                    config[key].pop(inner, None)
                else:
                    config[key][inner] = inner_value
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def make_bundle(folder: Path, modality: str = "image", *, config: dict | str | None = None, source: str | None = None,
                head: torch.Tensor | None = None, weights_name: str = "model.safetensors",
                files: dict[str, bytes] | None = None) -> Path:
    """Write a working bundle into `folder` (created), with any part replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    config = bundle_config(modality) if config is None else config
    (folder / "model_config.yaml").write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    (folder / "model.py").write_text(source if source is not None else model_source())
    weights = HEAD if head is None else head
    save_file({"head.weight": weights.contiguous(), "head.bias": torch.zeros(weights.shape[0])}, str(folder / weights_name))
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    return folder
