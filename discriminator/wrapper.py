"""The one wrapper that makes any backbone speak the validator's contract.

`Detector` takes what the validator feeds — uint8 `[B,3,H,W]` (image) or
`[B,T,3,H,W]` (video) in [0, 255] — casts and normalises inside the graph, maps
any T ≥ 1 onto the backbone's native frame count, aggregates over time and returns
float32 logits `[B, K]` (or embeddings for `task="embeddings"`). It never resizes:
the validator has already resized and centre-cropped to the graph's H×W.

Frame mapping (`uniform`): with T incoming frames and N native frames, backbone
frame i (0 ≤ i < N) is incoming frame ``floor((2i + 1) · T / (2N))`` — the frame
under the centre of the i-th of N equal slices of the clip. It is computed from the
runtime shape in integer arithmetic, so it stays live in the exported graph. When
T = N it is the identity; when every frame of a clip is duplicated (T = 2N) it
picks exactly the original frames, so the logits do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from discriminator.spec import DetectorSpec

#: `frames`: the backbone sees one picture at a time, `[N,3,H,W]` (any image model).
#: `clip`: the backbone sees a whole clip, `[B,T,3,H,W]` (VideoMAE, custom temporal nets).
InputKind = Literal["frames", "clip"]


@dataclass(frozen=True)
class BundleRecipe:
    """How a bundle's `model.py` rebuilds this backbone without the kit (see discriminator/bundle/).

    `code` is Python source that imports only what the evaluator allows (it is embedded verbatim);
    `build` is an expression, evaluated after `code`, that returns the backbone module with the
    architecture this build uses (class count included), ready for the weights to be loaded into.
    """

    code: str
    build: str
    #: Where `code` came from, for the comment above it in model.py.
    origin: str


@dataclass
class Backbone:
    """A resolved model source, before wrapping: the module plus what the wrapper must know about it."""

    module: nn.Module
    input_kind: InputKind
    task: Literal["classify", "embeddings"] = "classify"
    native_frames: int | None = None
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    #: Class names in the order of the backbone's logits (classification only).
    class_names: tuple[str, ...] = ("real", "synthetic", "semisynthetic")
    #: False when the classification head has random weights: the build says so loudly.
    head_trained: bool = True
    description: str = ""
    notes: list[str] = field(default_factory=list)
    #: What to record in the manifest about where the weights came from.
    provenance: dict[str, Any] = field(default_factory=dict)
    #: How a bundle rebuilds the module; None → the bundle emitter derives it (Hugging Face) or refuses.
    recipe: BundleRecipe | None = None


def unwrap_output(output: Any, task: str) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face output objects, dicts and tuples → plain tensors.

    classify: the logits tensor. embeddings: (tokens `[N, L, D]`, pooled `[N, D]`).
    """
    if task == "classify":
        if isinstance(output, torch.Tensor):
            return output
        if hasattr(output, "logits"):
            return output.logits
        if isinstance(output, dict):
            for key in ("logits", "output"):
                if key in output:
                    return output[key]
        if isinstance(output, (tuple, list)):
            return output[0]
        raise TypeError(f"cannot find logits in a {type(output).__name__}")
    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
    if hidden.dim() == 4:  # a conv feature map [N, C, h, w] → tokens [N, h·w, C]
        hidden = hidden.flatten(2).transpose(1, 2)
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        pooled = hidden.mean(dim=1)
    return hidden, pooled.flatten(1)


def uniform_frame_indices(frames: torch.Tensor | int, native: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices of the `native` frames taken from a clip of `frames` frames (see module docstring)."""
    i = torch.arange(native, device=device)
    return torch.div((2 * i + 1) * frames, 2 * native, rounding_mode="floor")


class Detector(nn.Module):
    """uint8 media in, float32 logits (or embeddings) out; see the module docstring."""

    def __init__(self, backbone: Backbone, spec: DetectorSpec):
        super().__init__()
        if spec.modality == "image" and backbone.input_kind == "clip":
            raise ValueError("a clip backbone (video transformer) cannot be built as an image detector")
        self.backbone = backbone.module
        self.input_kind = backbone.input_kind
        self.modality = spec.modality
        self.task = spec.task
        self.frame_mapping = spec.frame_mapping
        self.native_frames = spec.native_frames
        self.temperature = float(spec.temperature)
        mean = torch.tensor(spec.mean, dtype=torch.float32)
        std = torch.tensor(spec.std, dtype=torch.float32)
        # x / 255 then (x − mean) / std, folded into one multiply-add.
        shape = (1, 3, 1, 1) if spec.modality == "image" else (1, 1, 3, 1, 1)
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(shape), persistent=False)
        self.register_buffer("shift", (-mean / std).view(shape), persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) * self.scale + self.shift

    def map_frames(self, x: torch.Tensor) -> torch.Tensor:
        if self.frame_mapping != "uniform":
            return x
        idx = uniform_frame_indices(x.shape[1], self.native_frames, device=x.device)
        return x.index_select(1, idx)

    def forward(self, x: torch.Tensor) -> Any:
        x = self.normalise(x)
        if self.modality == "video":
            x = self.map_frames(x)
        if self.modality == "video" and self.input_kind == "frames":
            batch = x.shape[0]
            out = unwrap_output(self.backbone(x.flatten(0, 1)), self.task)
            if self.task == "classify":
                return self._finish(out.reshape(batch, -1, out.shape[-1]).mean(dim=1))
            hidden, pooled = out
            tokens = hidden.reshape(batch, -1, hidden.shape[-1])
            return tokens, pooled.reshape(batch, -1, pooled.shape[-1]).mean(dim=1)
        out = unwrap_output(self.backbone(x), self.task)
        return self._finish(out) if self.task == "classify" else out

    def _finish(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.to(torch.float32)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return logits
