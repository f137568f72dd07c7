"""`kit train --from-bundle`: someone else's 2-class bundle becomes a checked, trained 3-class bundle beside it.

Two bundles written here as a community miner would: a torchvision-style video ResNet
(plain torch, since torchvision is not in the kit's venv) whose `load_model` sizes
its `fc` from `num_classes`, and a transformers ViTForImageClassification built from a
tiny config literal whose `num_labels` comes from `num_classes`. Each is turned into
3 classes by the real command, checked by `kit check`, scored on held-out 3-class
data, and the original files are hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.train.data import MEDIA_TYPES, load_split
from validator_sim.bundle_runtime import BundleWorker
from tests.train_helpers import write_image_split, write_video_split

VIDEO_MODEL = '''
"""A small video ResNet in the torchvision r3d style (stem, residual stages, pooled fc)."""
import torch
from torch import nn
from safetensors.torch import load_file

MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)


class BasicBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class VideoResNet(nn.Module):
    def __init__(self, num_classes=400):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
                                  nn.BatchNorm3d(8), nn.ReLU())
        self.layer1 = BasicBlock(8)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(8, num_classes)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1, 1))

    def forward(self, x):
        x = x.permute(0, 2, 1, 3, 4).float() / 255.0
        x = (x - self.mean) / self.std
        x = self.avgpool(self.layer1(self.stem(x))).flatten(1)
        return self.fc(x)


def load_model(weights_path, num_classes=2, **kwargs):
    model = VideoResNet(num_classes=num_classes)
    model.load_state_dict(load_file(weights_path), strict=True)
    model.train(False)
    return model
'''

IMAGE_MODEL = '''
"""A Hugging Face ViT classifier from a config literal, fed the evaluator's uint8 pixels."""
import torch
from torch import nn
from safetensors.torch import load_file
from transformers import ViTConfig, ViTForImageClassification

CONFIG = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
              num_attention_heads=2, intermediate_size=64)


class Classifier(nn.Module):
    def __init__(self, num_labels):
        super().__init__()
        self.vit = ViTForImageClassification(ViTConfig(num_labels=num_labels, **CONFIG))

    def forward(self, x):
        x = x.float() / 127.5 - 1.0
        return self.vit(pixel_values=x).logits


def load_model(weights_path, num_classes=2, **kwargs):
    model = Classifier(num_classes)
    model.load_state_dict(load_file(weights_path), strict=True)
    model.train(False)
    return model
'''

HARD_CODED_HEAD = '''
import torch
from torch import nn
from safetensors.torch import load_file


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.conv(x.float() / 255.0).mean(dim=(2, 3)))


def load_model(weights_path, **kwargs):
    model = Net()
    model.load_state_dict(load_file(weights_path), strict=True)
    return model
'''


def write_bundle(folder: Path, modality: str, source: str, factory: str, size: int, frames: int | None = None) -> Path:
    """A 2-class bundle with seeded random weights, written by building the module from its own model.py."""
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(textwrap.dedent(source))
    namespace: dict = {}
    exec(compile((folder / "model.py").read_text(), str(folder / "model.py"), "exec"), namespace)
    torch.manual_seed(0)
    module = eval(factory, namespace)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(folder / "model.safetensors"))
    preprocessing = {"resize": [size, size], **({"num_frames": frames} if frames else {})}
    config = {"name": folder.name, "version": "1.0", "modality": modality, "dtype": "float32",
              "preprocessing": preprocessing, "model": {"num_classes": 2, "weights_file": "model.safetensors"}}
    (folder / "model_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def three_class_accuracy(bundle: Path, modality: str, data: Path, size: int, frames: int | None) -> float:
    """The new bundle's argmax against the 3-class label, run as the evaluator runs it (fresh process)."""
    split = load_split(data, modality, size, size, frames, MEDIA_TYPES, "current")
    with BundleWorker(bundle, modality) as worker:
        logits = worker.run(split.inputs.numpy())
    assert logits.shape == (len(split), 3)
    return float(np.mean(logits.argmax(axis=1) == split.media_labels))


@pytest.mark.parametrize("modality, source, factory, size, frames, mode", [
    ("video", VIDEO_MODEL, "VideoResNet(num_classes=2)", 32, 6, "finetune"),
    ("image", IMAGE_MODEL, "Classifier(2)", 32, None, "finetune"),
])
def test_a_two_class_bundle_becomes_a_checked_three_class_bundle(tmp_path, modality, source, factory, size, frames, mode):
    original = write_bundle(tmp_path / "theirs", modality, source, factory, size, frames)
    before = digests(original)
    writer = write_video_split if modality == "video" else write_image_split
    data = {split: writer(tmp_path / split, per_class, seed) for split, per_class, seed in
            (("train", 16, 1), ("val", 8, 2), ("test", 10, 3))}
    runner = CliRunner()
    result = runner.invoke(app, ["train", modality, "--from-bundle", str(original), "--data", str(data["train"]),
                                 "--val", str(data["val"]), "--mode", mode, "--epochs", "12", "--lr", "3e-3"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "theirs-3class"
    assert digests(original) == before, "the original bundle was changed"
    assert (out / "model.py").read_bytes() == (original / "model.py").read_bytes()
    config = yaml.safe_load((out / "model_config.yaml").read_text())
    assert config["model"]["num_classes"] == 3 and config["preprocessing"] == yaml.safe_load(
        (original / "model_config.yaml").read_text())["preprocessing"]

    check = runner.invoke(app, ["check", str(out), "--modality", modality, "--json"])
    report = json.loads(check.stdout)
    assert check.exit_code == 0, [f for f in report.get("findings", []) if f.get("status") == "fail"]

    accuracy = three_class_accuracy(out, modality, data["test"], size, frames)
    assert accuracy > 0.5, f"3-class accuracy {accuracy:.2f} on held-out data is not above chance (1/3)"


def test_probe_trains_only_the_new_head_and_keeps_every_other_weight(tmp_path):
    from safetensors.torch import load_file

    original = write_bundle(tmp_path / "theirs", "image", IMAGE_MODEL, "Classifier(2)", 32)
    train, val = write_image_split(tmp_path / "train", 12, 1), write_image_split(tmp_path / "val", 6, 2)
    result = CliRunner().invoke(app, ["train", "image", "--from-bundle", str(original), "--data", str(train), "--val", str(val),
                                      "--mode", "probe", "--epochs", "3", "--no-calibrate", "--out", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    old, new = load_file(str(original / "model.safetensors")), load_file(str(tmp_path / "new" / "model.safetensors"))
    assert set(old) == set(new)
    changed = sorted(name for name in old if old[name].shape != new[name].shape or not torch.equal(old[name], new[name]))
    assert changed == ["vit.classifier.bias", "vit.classifier.weight"]
    assert new["vit.classifier.weight"].shape == (3, 32)


def test_a_bundle_whose_load_model_hard_codes_two_classes_gets_one_line(tmp_path):
    original = write_bundle(tmp_path / "theirs", "image", HARD_CODED_HEAD, "Net()", 24)
    train, val = write_image_split(tmp_path / "train", 4, 1), write_image_split(tmp_path / "val", 4, 2)
    before = digests(original)
    result = CliRunner().invoke(app, ["train", "image", "--from-bundle", str(original), "--data", str(train), "--val", str(val)])
    assert result.exit_code != 0
    assert "cannot get a 3-wide head" in result.output and "Traceback" not in result.output
    assert digests(original) == before and not (tmp_path / "theirs-3class").exists()


def test_from_bundle_refuses_options_the_bundle_decides(tmp_path):
    result = CliRunner().invoke(app, ["train", "image", "--from-bundle", str(tmp_path), "--data", str(tmp_path),
                                      "--val", str(tmp_path), "--height", "64"])
    assert result.exit_code != 0 and "--height cannot be combined with --from-bundle" in result.output


def test_an_existing_output_is_kept_without_force_and_out_may_not_sit_in_the_original(tmp_path):
    original = write_bundle(tmp_path / "theirs", "image", HARD_CODED_HEAD, "Net()", 24)
    (tmp_path / "theirs-3class").mkdir()
    (tmp_path / "theirs-3class" / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["train", "image", "--from-bundle", str(original), "--data", str(tmp_path),
                                      "--val", str(tmp_path)])
    assert result.exit_code != 0 and "already exists" in result.output
    assert (tmp_path / "theirs-3class" / "mine.txt").read_text() == "keep me"
    inside = CliRunner().invoke(app, ["train", "image", "--from-bundle", str(original), "--data", str(tmp_path),
                                      "--val", str(tmp_path), "--out", str(original / "new")])
    assert inside.exit_code != 0 and "inside it" in inside.output
