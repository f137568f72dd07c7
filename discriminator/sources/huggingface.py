"""`hf:<hub-id-or-local-dir>` — any Hugging Face image or video model.

Classification checkpoints keep their head (re-headed to the kit's classes when
the count differs, which leaves that head untrained). Base models without a head
become embedding exporters by default, or get a linear head on their pooled
embedding with `--task classify`. Video transformers (VideoMAE, TimeSformer,
ViViT) are clip backbones with a fixed native frame count; everything else is
applied frame by frame.

Downloads are real `from_pretrained` calls. When the hub cannot be reached the
kit says so in one line, with the command that makes a local copy instead.
"""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from discriminator.errors import HubUnreachableError, InputError, KitError, UsageError, first_line
from discriminator.spec import DEFAULT_CLASS_NAMES, IMAGENET_MEAN, IMAGENET_STD
from discriminator.wrapper import Backbone, unwrap_output

#: model_type → config attribute holding the native frame count, for clip backbones.
VIDEO_MODEL_TYPES = {"videomae": "num_frames", "timesformer": "num_frames", "vivit": "num_frames"}
HEAD_SUFFIXES = ("ForImageClassification", "ForVideoClassification")


class PooledLinearHead(nn.Module):
    """A base model plus one linear layer on its pooled embedding (for bases with no HF classification class)."""

    def __init__(self, base: nn.Module, hidden_size: int, num_classes: int):
        super().__init__()
        self.base = base
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        _, pooled = unwrap_output(self.base(pixel_values), "embeddings")
        return self.head(pooled)


def hub_reachable(timeout: float = 5.0) -> bool:
    """One TCP connection to the hub endpoint; False when offline mode is set or it fails."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.sep in ref.strip("/").split("/", 1)[-1] or ref.count("/") > 1


def _pretrained_kwargs(ref: str) -> dict[str, Any]:
    """Locate `ref`: a local folder, a cached hub id, or a hub id we can download."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"{path} has no config.json", "pass a folder written by save_pretrained() or `hf download`")
        return {"pretrained_model_name_or_path": str(path)}
    if _looks_like_path(ref):
        raise InputError(f"{ref} is not a folder", "pass a folder written by save_pretrained(), or a hub id like MCG-NJU/videomae-base")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(ref, local_files_only=True)
        return {"pretrained_model_name_or_path": ref, "local_files_only": True}
    except OSError:
        pass
    if not hub_reachable():
        raise HubUnreachableError(
            f"cannot reach the Hugging Face Hub to download '{ref}'",
            f"on a machine with internet run `hf download {ref} --local-dir DIR`, copy DIR here, and pass --model hf:DIR",
        )
    return {"pretrained_model_name_or_path": ref}


def _preprocessor_config(ref: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's preprocessor_config.json, parsed; {} when it has none (or for a config object)."""
    if ref is None:
        return {}
    try:
        from transformers.utils import cached_file

        found = cached_file(kwargs["pretrained_model_name_or_path"], "preprocessor_config.json",
                            local_files_only=kwargs.get("local_files_only", False),
                            _raise_exceptions_for_missing_entries=False)
        return json.loads(Path(found).read_text()) if found else {}
    except (OSError, ValueError):
        return {}


def _normalisation(preprocessor: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    """mean/std from the checkpoint's preprocessor_config.json; ImageNet values when it has none."""
    if "image_mean" in preprocessor and "image_std" in preprocessor:
        return tuple(preprocessor["image_mean"]), tuple(preprocessor["image_std"]), "preprocessor_config.json"
    return IMAGENET_MEAN, IMAGENET_STD, "ImageNet defaults (no preprocessor_config.json)"


def _pair(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    return None  # e.g. {"shortest_edge": 256}: a resize rule, not a fixed size


def native_size(config: Any, preprocessor: dict[str, Any]) -> tuple[tuple[int, int] | None, str]:
    """The H×W the checkpoint is fed at inference, and where that was read: the preprocessor's crop, else its fixed
    size, else the config's image_size (what a ViT's position embeddings are made for); None for models with none
    (convolutional nets take any size)."""
    for key in ("crop_size", "size"):
        size = _pair(preprocessor.get(key))
        if size:
            return size, f"preprocessor_config.json {key}"
    size = _pair(getattr(config, "image_size", None))
    return (size, "config.json image_size") if size else (None, "")


def _require_pixel_model(config: Any, ref: str | None) -> None:
    """Refuse text and audio models before loading them: their input is token ids or a waveform, not pixels."""
    from transformers import MODEL_MAPPING

    try:
        main_input = MODEL_MAPPING[type(config)].main_input_name
    except KeyError:  # an architecture without a base-model class: let loading decide
        return
    if main_input != "pixel_values":
        raise UsageError(f"'{ref or config.model_type}' ({config.model_type}) is not an image or video model: "
                         f"its input is {main_input}, not pixels",
                         "pass a vision model (ViT, ResNet, ConvNeXt, VideoMAE, …) or its vision tower")


def _instantiate(auto_cls: Any, kwargs: dict[str, Any], config: Any, ref: str | None, **extra: Any) -> nn.Module:
    """`from_pretrained` for files (their failures named in one line), `from_config` for a config object."""
    if not kwargs:
        return auto_cls.from_config(config)
    try:
        return auto_cls.from_pretrained(**kwargs, config=config, **extra)
    except KitError:
        raise
    except Exception as exc:  # safetensors, torch and transformers raise many types for damaged files
        raise InputError(f"cannot load the Hugging Face model {ref} ({type(exc).__name__}: {first_line(exc)})",
                         "download it again or re-save it with save_pretrained(); a copy cut short is the usual cause") from exc


#: Names a checkpoint may give its real class (lower case); the network reads logit 0 as real.
REAL_LABELS = frozenset({"real", "authentic", "human", "natural", "genuine", "original", "pristine", "bonafide", "camera"})
#: Words that mark a partly generated (semisynthetic) class, which the network expects at index 2, not 1.
SEMI_WORDS = ("semi", "edit", "inpaint", "partial", "manipulat", "splice")


def check_label_order(id2label: dict, ref: str | None) -> str:
    """Refuse a trained head whose named labels are not in the network's order; return the note to record."""
    labels = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(len(id2label))]
    if not labels or all(re.fullmatch(r"LABEL_\d+", name) for name in labels):
        return "the checkpoint's labels are unnamed (LABEL_0 …): the kit takes index 0 as real — check that it is"
    shown = ", ".join(f"{i} {name}" for i, name in enumerate(labels))
    fix = ("re-export the head with real at index 0 (then synthetic, then semisynthetic), or train a fresh head "
           f"with `kit train --model hf:{ref}`; the kit does not reorder a trained head")
    if labels[0].strip().lower() not in REAL_LABELS:
        raise UsageError(f"the checkpoint's class 0 is '{labels[0]}' (labels: {shown}), but the network reads logit 0 "
                         "as real, so every prediction would be inverted", fix)
    if len(labels) >= 3 and any(word in labels[1].lower() for word in SEMI_WORDS):
        raise UsageError(f"the checkpoint's class 1 is '{labels[1]}' (labels: {shown}); the network's order is real, "
                         "synthetic, semisynthetic, so the 3-class score would swap the two AI classes", fix)
    return f"checkpoint labels kept in order: {shown}"


def load_hf_backbone(ref: str | None, modality: str, task: str = "auto", config: Any = None,
                     num_classes: int | None = None, class_names: tuple[str, ...] | None = None) -> Backbone:
    """Load `ref` (hub id or folder), or build from `config` with random weights when `ref` is None.

    Without `num_classes`/`class_names`, a trained 2-label head is kept as [real, ai] and any other head
    becomes the kit's 3 classes."""
    from transformers import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
        MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING,
        AutoConfig,
        AutoModel,
        AutoModelForImageClassification,
        AutoModelForVideoClassification,
    )
    from transformers import __version__ as transformers_version
    from transformers.utils import logging as hf_logging

    if not os.environ.get("KIT_DEBUG"):
        hf_logging.set_verbosity_error()  # the kit reports re-heading itself, in one line
        hf_logging.disable_progress_bar()
    if ref is None and config is None:
        raise UsageError("a Hugging Face source needs an id, a folder, or a config", "use --model hf:<id-or-dir>")
    kwargs = _pretrained_kwargs(ref) if ref is not None else {}
    if config is None:
        try:
            config = AutoConfig.from_pretrained(**kwargs)
        except OSError as exc:
            raise InputError(f"cannot read the config of {ref} ({type(exc).__name__}: {first_line(exc)})",
                             "pass a folder written by save_pretrained(), or download it again") from exc
        except ValueError as exc:  # a model_type this transformers does not know (custom code, a newer release)
            raise InputError(f"transformers {transformers_version} cannot build {ref} ({first_line(exc)})",
                             "upgrade transformers if the architecture is newer, or build it in your own factory: "
                             "--model py:<file.py>:<factory>") from exc
    _require_pixel_model(config, ref)
    model_type = getattr(config, "model_type", "")
    is_clip = model_type in VIDEO_MODEL_TYPES
    if is_clip and modality == "image":
        raise UsageError(f"'{ref}' is a video model ({model_type})", f"run `kit build video --model hf:{ref}`")
    has_head = any(str(a).endswith(HEAD_SUFFIXES) for a in (getattr(config, "architectures", None) or []))
    notes: list[str] = []
    if task == "auto":
        task = "classify" if has_head else "embeddings"
        notes.append(f"task auto → {task} ({'the checkpoint has a classification head' if has_head else 'base model without a head'})")
    auto_cls = AutoModelForVideoClassification if is_clip else AutoModelForImageClassification
    head_mapping = MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING if is_clip else MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING
    head_trained = True
    if num_classes is None:
        two_labels = has_head and getattr(config, "num_labels", None) == 2
        class_names = tuple(class_names or (("real", "ai") if two_labels else DEFAULT_CLASS_NAMES))
        num_classes = len(class_names)
    class_names = tuple(class_names or DEFAULT_CLASS_NAMES[:num_classes])
    if task == "classify":
        rehead = getattr(config, "num_labels", None) != num_classes or not has_head
        if not rehead:
            notes.append(check_label_order(getattr(config, "id2label", None) or {}, ref))
        if rehead:
            config.num_labels = num_classes
            config.id2label = dict(enumerate(class_names))
            config.label2id = {n: i for i, n in enumerate(class_names)}
            head_trained = False
            notes.append(f"classification head {'added' if not has_head else 're-headed'} with {num_classes} classes: "
                         "its weights are random until trained (kit train) or loaded (--weights)")
        if type(config) in head_mapping:
            module = _instantiate(auto_cls, kwargs, config, ref, ignore_mismatched_sizes=rehead)
        else:  # no AutoModelFor…Classification for this architecture
            base = _instantiate(AutoModel, kwargs, config, ref)
            hidden = getattr(config, "hidden_size", None) or getattr(config, "hidden_sizes", [None])[-1]
            module = PooledLinearHead(base, hidden, num_classes)
            head_trained = False
            notes.append("linear head on the pooled embedding (random until trained)")
    else:
        module = _instantiate(AutoModel, kwargs, config, ref)
    preprocessor = _preprocessor_config(ref, kwargs)
    mean, std, norm_from = _normalisation(preprocessor)
    notes.append(f"normalisation from {norm_from}")
    size, size_from = native_size(config, preprocessor)
    provenance = {"source": f"hf:{ref}" if ref else f"hf-config:{model_type}", "model_type": model_type,
                  "architecture": type(module).__name__}
    if size:
        provenance.update(input_size=list(size), input_size_from=size_from)
    native = getattr(config, VIDEO_MODEL_TYPES[model_type]) if is_clip else None
    return Backbone(
        module=module.eval(),
        input_kind="clip" if is_clip else "frames",
        task=task,
        native_frames=native,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_names=tuple(class_names),
        head_trained=head_trained,
        description=f"Hugging Face {type(module).__name__} ({model_type})",
        notes=notes,
        provenance=provenance,
    )
