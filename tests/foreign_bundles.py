"""Bundles written the way miners write them elsewhere, each in one style the network sees.

Every bundle here is real and complete — model_config.yaml, a stand-alone model.py and
safetensors weights — and imports only what the evaluator allows. None is written by
the kit: they are what `kit check` must judge exactly as the network would. The
architectures are the libraries' own, shrunk (timm's test models, a torchvision
R(2+1)D/R3D video network, transformers models from small config literals).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

#: Input size of every foreign bundle here (small, so the checks run in seconds on a CPU).
SIZE = 64
FRAMES = 8


@dataclass(frozen=True)
class ForeignBundle:
    """One style: its files, the modality, and what `kit check` must say about it."""

    name: str
    modality: str
    config: dict[str, Any]
    model_py: str
    #: Builds the module whose state dict is saved as the weights (run in the kit's Python).
    build: Callable[[], Any]
    #: `kit check` exit code the network's verdict implies (0: it loads and is scored).
    exit_code: int
    #: Rule id → status that must appear (everything else must pass, unless listed here).
    expect: dict[str, str]


TIMM_IMAGE_PY = '''"""A timm backbone image detector with a 2-logit head [real, AI], keyword-only options."""

import timm
import torch
from safetensors.torch import load_file
from torch import nn


class TimmDetector(nn.Module):
    def __init__(self, backbone, num_classes):
        super().__init__()
        self.net = timm.create_model(backbone, pretrained=False, num_classes=num_classes)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def forward(self, x):
        x = x.to(self.mean.dtype) / 255.0
        return self.net((x - self.mean) / self.std)


def load_model(weights_path, *, num_classes=2, backbone="test_vit", img_size=64):
    model = TimmDetector(backbone, num_classes)
    model.load_state_dict(load_file(weights_path), strict=True)
    model.train(False)
    return model
'''


def _timm_image() -> Any:
    import importlib

    module = _module_from_source("foreign_timm", TIMM_IMAGE_PY)
    importlib.import_module("torch").manual_seed(0)
    return module.TimmDetector("test_vit", 2)


TORCHVISION_VIDEO_PY = '''"""A torchvision R3D-18 video detector (2 logits), frames sampled at a fixed rate."""

import torch
from safetensors.torch import load_file
from torch import nn
from torchvision.models.video import r3d_18


class VideoDetector(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.net = r3d_18(weights=None, num_classes=num_classes)
        self.register_buffer("mean", torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1))

    def forward(self, video):
        x = video.to(self.mean.dtype).permute(0, 2, 1, 3, 4) / 255.0
        return self.net((x - self.mean) / self.std)


def load_model(weights_path, num_classes=2, **kwargs):
    model = VideoDetector(num_classes)
    model.load_state_dict(load_file(weights_path))
    return model
'''


def _torchvision_video() -> Any:
    import torch

    torch.manual_seed(0)
    return _module_from_source("foreign_tv", TORCHVISION_VIDEO_PY).VideoDetector(2)


VIDEOMAE_PY = '''"""A transformers VideoMAE built from a config literal (no download), 2 logits, dtype given under model:."""

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import VideoMAEConfig, VideoMAEForVideoClassification

CONFIG = dict(image_size=64, patch_size=16, num_channels=3, num_frames=8, tubelet_size=2, hidden_size=32,
              num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, use_mean_pooling=True)


class Detector(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.model = VideoMAEForVideoClassification(VideoMAEConfig(num_labels=num_classes, **CONFIG))

    def forward(self, video):
        x = video.to(next(self.parameters()).dtype) / 255.0
        return self.model(pixel_values=(x - 0.45) / 0.225).logits


def load_model(weights_path, num_classes=2, **kwargs):
    model = Detector(num_classes)
    model.load_state_dict(load_file(weights_path), strict=True)
    return model
'''


def _videomae() -> Any:
    import torch

    torch.manual_seed(0)
    return _module_from_source("foreign_vmae", VIDEOMAE_PY).Detector(2)


ONE_LOGIT_PY = '''"""A transformers ResNet from a config literal with a single logit (p(AI) through a sigmoid)."""

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import ResNetConfig, ResNetForImageClassification


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                              layer_type="basic", num_labels=1)
        self.model = ResNetForImageClassification(config)

    def forward(self, x):
        return self.model(pixel_values=x.to(torch.float32) / 127.5 - 1.0).logits


def load_model(weights_path, num_classes=1):
    model = Detector()
    model.load_state_dict(load_file(weights_path))
    return model
'''


def _one_logit() -> Any:
    import torch

    torch.manual_seed(0)
    return _module_from_source("foreign_one", ONE_LOGIT_PY).Detector()


DOWNLOADER_PY = '''"""Downloads its backbone from the hub inside load_model (works on a miner's machine, not on the network)."""

import torch
from torch import nn
from transformers import AutoModel


class Detector(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.backbone = AutoModel.from_pretrained("facebook/dinov2-small")
        self.head = nn.Linear(384, num_classes)

    def forward(self, x):
        features = self.backbone(pixel_values=x.to(torch.float32) / 255.0).pooler_output
        return self.head(features)


def load_model(weights_path, num_classes=3):
    return Detector(num_classes)
'''


def _downloader_weights() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    holder = nn.Module()
    holder.head = nn.Linear(384, 3)
    return holder


SLOW_PY = '''"""Correct, but its forward does far more arithmetic than a CPU can finish within a short time limit."""

import torch
from safetensors.torch import load_file
from torch import nn


class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 3)

    def forward(self, x):
        x = x.to(self.head.weight.dtype) / 255.0
        work = torch.ones(1024, 1024, dtype=x.dtype, device=x.device)
        for _ in range(400):
            work = torch.tanh(work @ work / 1024.0)
        return self.head(x.mean(dim=(2, 3))) + 0.0 * work.mean()


def load_model(weights_path, num_classes=3):
    model = Slow()
    model.load_state_dict(load_file(weights_path))
    return model
'''


def _slow() -> Any:
    import torch

    torch.manual_seed(0)
    return _module_from_source("foreign_slow", SLOW_PY).Slow()


def _module_from_source(name: str, source: str) -> Any:
    """Import a model.py text as a module of the kit's Python, to build the weights it will load."""
    import importlib.util
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="foreign-src-") as folder:
        path = Path(folder) / f"{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


def _image_config(**model: Any) -> dict[str, Any]:
    return {"dtype": "float32", "preprocessing": {"resize": [SIZE, SIZE]}, "model": model}


def _video_config(**extra: Any) -> dict[str, Any]:
    preprocessing = {"resize": [SIZE, SIZE], "num_frames": FRAMES, **extra.pop("preprocessing", {})}
    return {"dtype": "float32", "preprocessing": preprocessing, "model": extra}


FOREIGN_BUNDLES: tuple[ForeignBundle, ...] = (
    ForeignBundle("timm-image-2class-kwonly", "image",
                  _image_config(num_classes=2, backbone="test_vit", img_size=SIZE),
                  TIMM_IMAGE_PY, _timm_image, 0, {"config-classes": "warn", "bundle-classes": "warn"}),
    ForeignBundle("torchvision-video-2class-frame-rate", "video",
                  _video_config(num_classes=2, preprocessing={"frame_rate": 8}, pretrained_backbone="r3d_18"),
                  TORCHVISION_VIDEO_PY, _torchvision_video, 0, {"config-classes": "warn", "bundle-classes": "warn"}),
    ForeignBundle("transformers-videomae-config-literal-dtype-under-model", "video",
                  _video_config(num_classes=2, dtype="float16"),
                  VIDEOMAE_PY, _videomae, 0,
                  {"config-classes": "warn", "bundle-classes": "warn", "config-keys": "warn"}),
    ForeignBundle("transformers-resnet-1-logit", "image", _image_config(num_classes=1),
                  ONE_LOGIT_PY, _one_logit, 0, {"config-classes": "warn", "bundle-classes": "warn"}),
    ForeignBundle("hub-downloader", "image", _image_config(num_classes=3),
                  DOWNLOADER_PY, _downloader_weights, 1, {"network": "warn", "bundle-loads": "fail"}),
    ForeignBundle("too-slow-for-the-time-limit", "image", _image_config(num_classes=3),
                  SLOW_PY, _slow, 1, {"bundle-runs": "fail"}),
)


def write_foreign_bundle(bundle: ForeignBundle, folder: Path) -> Path:
    """Write `bundle` into `folder` (created): its YAML, its model.py, its weights from `build()`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_config.yaml").write_text(yaml.safe_dump(bundle.config, sort_keys=False), encoding="utf-8")
    (folder / "model.py").write_text(bundle.model_py, encoding="utf-8")
    state = {k: v.detach().contiguous().clone() for k, v in bundle.build().state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    return folder
