"""The contract between a detector and the SN34 validator, as data that travels with the model.

A `DetectorSpec` is made once at build time and written into the ONNX file's
metadata (key `sn34_kit.spec`) and into `manifest.json` beside it. Every later
stage (check, bench, package, train) reads it back instead of guessing.

This module imports no torch: the simulator reads specs too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from discriminator.errors import InputError, UsageError

SPEC_METADATA_KEY = "sn34_kit.spec"
MANIFEST_NAME = "manifest.json"
SPEC_FORMAT = 1

#: The validator's 3-class order (contract §3). Only index 0 ("real") matters to the binary score.
DEFAULT_CLASS_NAMES: tuple[str, ...] = ("real", "synthetic", "semisynthetic")
#: What the validator sends a video model whose frame axis is symbolic (contract §1).
VALIDATOR_DEFAULT_FRAMES = 16
#: The validator clamps T to this; a model with fixed T above it fails every batch.
VALIDATOR_MAX_FRAMES = 64
#: Largest height or width a spec accepts. The validator resizes every picture and frame to H×W, and the largest
#: media it decodes is 4K video (3840×2160), so a bigger side only upsamples; 4096² uint8 is already 48 MiB per
#: frame, 12 GiB for one 64-frame clip in float32. A typo (`--height 100000`) must fail here, not in malloc.
MAX_SIDE = 4096
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Modality = Literal["image", "video"]
#: How incoming frames reach the backbone: `uniform` resamples any T to `native_frames`
#: (index i takes frame floor((2i+1)·T / (2·native))), `all` feeds every frame.
FrameMapping = Literal["uniform", "all", "none"]
#: How time is reduced to one prediction.
TemporalAggregation = Literal["mean_logits", "mean_features", "backbone", "none"]
Task = Literal["classify", "embeddings"]

MODALITIES = ("image", "video")
FRAME_MAPPINGS = ("uniform", "all", "none")
AGGREGATIONS = ("mean_logits", "mean_features", "backbone", "none")
TASKS = ("classify", "embeddings")


@dataclass(frozen=True)
class DetectorSpec:
    """Everything the validator and the miner must agree on for one detector."""

    name: str
    modality: Modality
    height: int = 224
    width: int = 224
    #: Frames the validator sends (video only). It sends 16 when the graph's frame axis is symbolic.
    frames: int | None = None
    #: Frames the backbone needs (VideoMAE: 16); None when it takes any number.
    native_frames: int | None = None
    frame_mapping: FrameMapping = "none"
    temporal_aggregation: TemporalAggregation = "none"
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    #: Per-channel normalisation on the [0, 1] scale, applied inside the graph after x / 255.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    task: Task = "classify"
    #: Logits are divided by this inside the graph (set by calibration; 1.0 = untouched).
    temperature: float = 1.0
    format: int = SPEC_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise UsageError(f"invalid detector spec: {problems[0]}", "fix the option or the manifest field named")

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.modality not in MODALITIES:
            out.append(f"modality {self.modality!r} is not one of {', '.join(MODALITIES)}")
        for dim_name in ("height", "width"):
            value = getattr(self, dim_name)
            if not isinstance(value, int) or not 8 <= value <= MAX_SIDE:
                out.append(f"{dim_name} must be an integer from 8 to {MAX_SIDE}, got {value!r}")
        if self.modality == "video":
            if self.frames is None or not 1 <= self.frames <= VALIDATOR_MAX_FRAMES:
                out.append(f"frames must be between 1 and {VALIDATOR_MAX_FRAMES} for video, got {self.frames!r}")
            if self.frame_mapping not in FRAME_MAPPINGS or self.frame_mapping == "none":
                out.append(f"frame_mapping must be 'uniform' or 'all' for video, got {self.frame_mapping!r}")
            if self.native_frames is not None and (not isinstance(self.native_frames, int) or self.native_frames < 1):
                out.append(f"native_frames must be an integer ≥ 1, got {self.native_frames!r}")
            elif self.frame_mapping == "uniform" and not self.native_frames:
                out.append("frame_mapping 'uniform' needs native_frames")
        if self.temporal_aggregation not in AGGREGATIONS:
            out.append(f"temporal_aggregation {self.temporal_aggregation!r} is not one of {', '.join(AGGREGATIONS)}")
        if self.task not in TASKS:
            out.append(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if self.task == "classify":
            if len(self.class_names) not in (2, 3):
                out.append(f"a classifier needs 2 or 3 classes for the validator, got {len(self.class_names)}")
            elif self.class_names[0] != "real":
                out.append(f"class 0 must be 'real' (the validator reads index 0 as real), got {self.class_names[0]!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            out.append("mean and std need 3 values each (R, G, B)")
        elif any(s <= 0 for s in self.std):
            out.append("std values must be > 0 (a zero std turns constant frames into NaN)")
        if not self.temperature > 0:
            out.append(f"temperature must be > 0, got {self.temperature!r}")
        return out

    @property
    def frames_axis_symbolic(self) -> bool:
        """Video graphs keep T symbolic when the validator's default (16) is wanted; it sends 16 frames to a
        symbolic axis, so any other count must be written into the graph as a fixed dimension."""
        return self.modality == "video" and self.frames == VALIDATOR_DEFAULT_FRAMES

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def artifact_stem(self) -> str:
        """`video_detector`, `image_detector` — the file names the network expects."""
        return f"{self.modality}_detector"

    def input_shape(self, batch: int | str = "batch", frames: int | str | None = None) -> list[int | str]:
        if self.modality == "image":
            return [batch, 3, self.height, self.width]
        return [batch, frames if frames is not None else "frames", 3, self.height, self.width]

    def replace(self, **changes: Any) -> "DetectorSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["class_names"] = list(self.class_names)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DetectorSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        values = {k: v for k, v in data.items() if k in known}
        for key in ("class_names", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        if unknown:
            values.setdefault("extra", {})
            values["extra"] = {**values["extra"], **{k: data[k] for k in unknown}}
        try:
            return cls(**values)
        except TypeError as exc:
            raise InputError(f"spec is missing a field: {exc}", "rebuild the model with `kit build`") from exc


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (what a manifest records for each artifact file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest.json` (which holds the spec under `spec`) into `directory`."""
    path = Path(directory) / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest from a file or from the directory that holds one."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"no manifest at {path}", "point at a `kit build` output folder or its manifest.json")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc})", "rebuild with `kit build --force`") from exc
    if not isinstance(data, dict) or "spec" not in data:
        raise InputError(f"{path} has no `spec` section", "rebuild with `kit build --force`")
    return data


def spec_from_manifest(path: Path) -> DetectorSpec:
    return DetectorSpec.from_dict(read_manifest(path)["spec"])


def spec_from_onnx_metadata(metadata: dict[str, str]) -> DetectorSpec | None:
    """The spec stored in an ONNX model's metadata_props (as a dict), or None for a foreign model."""
    raw = metadata.get(SPEC_METADATA_KEY)
    if raw is None:
        return None
    try:
        return DetectorSpec.from_dict(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise InputError(f"the model's {SPEC_METADATA_KEY} metadata is not JSON ({exc})", "rebuild with `kit build`") from exc


def spec_from_onnx(path_or_bytes: Path | bytes) -> DetectorSpec | None:
    """Read the spec from an ONNX file's metadata without loading its weights into a session."""
    import onnx

    try:
        if isinstance(path_or_bytes, (bytes, bytearray)):
            model = onnx.load_model_from_string(bytes(path_or_bytes))  # bytes never pull in external data
        else:
            model = onnx.load(str(path_or_bytes), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for garbage
        raise InputError(f"{path_or_bytes if not isinstance(path_or_bytes, bytes) else 'model bytes'} is not a readable ONNX model ({type(exc).__name__})",
                         "check the file, or rebuild it with `kit build`") from exc
    return spec_from_onnx_metadata({p.key: p.value for p in model.metadata_props})
