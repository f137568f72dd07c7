"""SN34 detector bundle: the model.py that the network's evaluator imports.

The evaluator imports this file as `custom_model`, calls
`load_model(weights_path, num_classes=3)`, moves the module with
`.to(device, dtype).eval()` and feeds it raw uint8 batches, `[B, 3, H, W]` for
images or `[B, T, 3, H, W]` for video, under `torch.no_grad()`. The module casts
them to its own parameter dtype, normalises them, maps the frames onto the ones
the backbone looks at, averages over time where the backbone sees single
pictures, and returns float32 logits `[B, len(CLASS_NAMES)]` in the order of
CLASS_NAMES (index 0 is real). It computes what the kit's ONNX export of the same
detector computes.

`kit build --format bundle` writes this file from the template in the kit
(discriminator/bundle/template.py): the two sections between `# <kit:…>` and
`# </kit:…>` are filled in per detector; everything else is the same in every
bundle. The file imports only what the evaluator's static analysis allows and
loads nothing from the network.
"""

import torch
from safetensors.torch import load_model as load_safetensors_into
from torch import nn

# <kit:settings>
# Filled in by kit build. The template's own values describe the stand-in backbone below.
MODALITY = "image"
CLASS_NAMES = ("real", "synthetic", "semisynthetic")
# Normalisation on the [0, 1] scale: (x / 255 - MEAN) / STD, per RGB channel.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# "frames": the backbone sees one picture at a time; "clip": it sees [B, T, 3, H, W].
INPUT_KIND = "frames"
# Video: the number of frames the backbone looks at (None: every frame it is given).
NATIVE_FRAMES = None
# Logits are divided by this (set by calibration; 1.0 leaves them as they are).
TEMPERATURE = 1.0
# </kit:settings>

# <kit:backbone>
# Filled in by kit build with the backbone's source and a build_backbone() that returns it.


class ColourProbe(nn.Module):
    """The template's stand-in backbone: a linear layer on each picture's mean colour."""

    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(3, num_classes)

    def forward(self, pixels):
        return self.fc(pixels.mean(dim=(2, 3)))


def build_backbone():
    return ColourProbe(len(CLASS_NAMES))
# </kit:backbone>


def uniform_frame_indices(frames, native, device):
    """The `native` frames taken from a clip of `frames`: frame i is floor((2i + 1) * frames / (2 * native))."""
    i = torch.arange(native, device=device)
    return torch.div((2 * i + 1) * frames, 2 * native, rounding_mode="floor")


def class_logits(output):
    """Logits from what a backbone returns: a tensor, an object with .logits, a dict, or a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        return output["logits"] if "logits" in output else output["output"]
    if isinstance(output, (tuple, list)):
        return output[0]
    if hasattr(output, "logits"):
        return output.logits
    raise TypeError(f"cannot find logits in a {type(output).__name__}")


class SN34Detector(nn.Module):
    """Raw uint8 media in, float32 logits [B, len(CLASS_NAMES)] out."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        std = torch.tensor(STD, dtype=torch.float32)
        mean = torch.tensor(MEAN, dtype=torch.float32)
        shape = (1, 3, 1, 1) if MODALITY == "image" else (1, 1, 3, 1, 1)
        # Plain attributes, not buffers: they stay float32 whatever dtype the evaluator moves the module to,
        # so normalisation is computed exactly as in the ONNX export before the cast.
        self.scale = (1.0 / (255.0 * std)).view(shape)
        self.shift = (-mean / std).view(shape)

    def compute_dtype(self):
        for parameter in self.backbone.parameters():
            return parameter.dtype
        return torch.float32

    def forward(self, media):
        x = media.to(torch.float32) * self.scale.to(media.device) + self.shift.to(media.device)
        x = x.to(self.compute_dtype())
        if MODALITY == "video" and NATIVE_FRAMES:
            x = x.index_select(1, uniform_frame_indices(x.shape[1], NATIVE_FRAMES, x.device))
        if MODALITY == "video" and INPUT_KIND == "frames":
            batch = x.shape[0]
            logits = class_logits(self.backbone(x.flatten(0, 1)))
            logits = logits.reshape(batch, -1, logits.shape[-1]).mean(dim=1)
        else:
            logits = class_logits(self.backbone(x))
        logits = logits.to(torch.float32)
        if TEMPERATURE != 1.0:
            logits = logits / TEMPERATURE
        return logits


def load_model(weights_path, num_classes=3, **kwargs):
    """Build the detector and load its weights strictly (a missing or unexpected key is an error).

    `num_classes` is the class count the evaluator scores (3 for image and video); this detector
    emits len(CLASS_NAMES) logits and the evaluator maps them onto its classes.
    """
    if kwargs:
        raise TypeError(f"load_model takes no options besides num_classes, got {', '.join(sorted(kwargs))}")
    if num_classes not in (3, len(CLASS_NAMES)):
        raise ValueError(f"this detector emits {len(CLASS_NAMES)} logits {CLASS_NAMES}; num_classes={num_classes}")
    model = SN34Detector(build_backbone())
    load_safetensors_into(model, weights_path, strict=True)
    return model.eval()
