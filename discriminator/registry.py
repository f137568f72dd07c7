"""Where `kit build --model X` finds its backbone: named sources, `hf:` ids/dirs, `timm:` architectures and `py:` factories.

Named sources are rows registered with `register_source()`: the built-in ones are
declared in `onnx_examples/sources.py` with their metadata and a `module:function`
reference, so `kit models` lists them without importing torch; the factory's module
is imported only when a source is built. `list_sources()` filters them with
wildcards and `get_source()` answers a typo with "did you mean". `resolve_backbone()`
is the one entry point the build uses.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discriminator.errors import KitError, UsageError, first_line
from discriminator.sources.checkpoint import WEIGHTS_FILE, is_checkpoint_dir, read_checkpoint

if TYPE_CHECKING:
    from discriminator.wrapper import Backbone

#: The module whose import registers the built-in sources (metadata only: it imports no torch).
BUILTIN_SOURCES_MODULE = "onnx_examples.sources"


@dataclass(frozen=True)
class SourceEntry:
    """A named detector source. `factory(**options) -> Backbone`; `--weights` are loaded by the registry."""

    name: str
    modality: str
    description: str
    #: "package.module:function", imported on first use.
    factory_ref: str
    #: "random init", "hub: <id>" …: what weights a plain build gets.
    weights: str
    #: Defaults the spec takes from this source (height, width, frames …).
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def factory(self) -> Callable[..., Backbone]:
        module_name, _, function_name = self.factory_ref.partition(":")
        return getattr(importlib.import_module(module_name), function_name)


_REGISTRY: dict[str, SourceEntry] = {}
_loaded = False


def register_source(name: str, modality: str, description: str, factory: str, weights: str = "random init",
                    **defaults: Any) -> SourceEntry:
    """Register the source `name`, built by the function `factory` ("package.module:function") when asked for."""
    entry = SourceEntry(name, modality, description, factory, weights, dict(defaults))
    _REGISTRY[name] = entry
    return entry


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        importlib.import_module(BUILTIN_SOURCES_MODULE)
        _loaded = True


def list_sources(pattern: str | None = None, modality: str | None = None) -> list[SourceEntry]:
    _load_builtins()
    entries = sorted(_REGISTRY.values(), key=lambda e: (e.modality, e.name))
    if pattern:
        entries = [e for e in entries if fnmatch.fnmatch(e.name, pattern)]
    if modality:
        entries = [e for e in entries if e.modality == modality]
    return entries


def get_source(name: str) -> SourceEntry:
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UsageError(
        f"unknown model '{name}'",
        f"{hint}run `kit models` to list names, or use hf:<id-or-dir> / py:<module>:<factory>",
    )


def resolve_backbone(model: str, modality: str, task: str = "auto", weights: Path | None = None,
                     options: dict[str, Any] | None = None,
                     num_classes: int | None = None) -> tuple[Backbone, dict[str, Any]]:
    """Turn the `--model` string into a Backbone; also return the spec defaults the source implies.

    `num_classes` (from --classes) is the head's width, given to every source that builds its own head.
    """
    from discriminator.sources.weights import apply_weights  # torch: listing sources imports none

    options = dict(options or {})
    if "task" in options:
        raise UsageError("the task is not a model option", f"pass --task {options['task']} instead of --model-option task=…")
    if model.startswith("timm:"):
        from discriminator.sources.timm_source import load_timm_backbone

        _refuse_unknown_options(model, load_timm_backbone, options, set_by_the_kit=("name", "modality", "task", "num_classes"))
        backbone = load_timm_backbone(model[5:], modality=modality, task=task, num_classes=num_classes or 3, **options)
        size = backbone.provenance["input_size"]
        return apply_weights(backbone, weights), {"height": size[0], "width": size[1]}
    if model.startswith("hf:"):
        from discriminator.sources.huggingface import load_hf_backbone

        _refuse_unknown_options(model, load_hf_backbone, options, set_by_the_kit=("ref", "modality", "task"))
        backbone = load_hf_backbone(model[3:], modality=modality, task=task, **options)
        size = backbone.provenance.get("input_size")
        if not size:
            return apply_weights(backbone, weights), {}
        backbone.notes.append(f"input {size[0]}×{size[1]} unless --height/--width say otherwise "
                              f"(from {backbone.provenance['input_size_from']})")
        return apply_weights(backbone, weights), {"height": size[0], "width": size[1]}
    if model.startswith("py:"):
        from discriminator.sources.python import load_python_backbone

        return load_python_backbone(model[3:], weights=weights, task=task, modality=modality, factory_options=options), {}
    if is_checkpoint_dir(Path(model)):
        return _resolve_checkpoint(Path(model), modality=modality)
    entry = get_source(model)
    if entry.modality != modality:
        raise UsageError(f"'{model}' is a detector for {entry.modality}, not {modality}",
                         f"run `kit build {entry.modality} --model {model}`, or pick one of `kit models --modality {modality}`")
    if task not in ("auto", "classify"):
        raise UsageError(f"'{model}' is a classifier; --task {task} needs a base model", "use hf:<base-model-id> for embeddings")
    parameters = _refuse_unknown_options(model, entry.factory, options, set_by_the_kit=("num_classes",))
    if num_classes is not None:
        if "num_classes" in inspect.signature(entry.factory).parameters:
            options["num_classes"] = num_classes
        elif num_classes != 3:
            raise UsageError(f"'{model}' always builds a 3-class head, so --classes cannot name {num_classes}",
                             "leave --classes out, or build a source that takes num_classes (timm:, py:)")
    try:
        backbone = entry.factory(**options)
    except KitError:
        raise
    except Exception as exc:  # a value the factory cannot use (channels=abc → a str where ints belong, …)
        if not options:
            raise
        given = " ".join(f"{key}={value!r}" for key, value in options.items())
        defaults = ", ".join(f"{name}={p.default!r}" for name, p in parameters.items() if p.default is not p.empty)
        raise UsageError(f"'{model}' cannot be built with {given} ({type(exc).__name__}: {first_line(exc)})",
                         f"check the --model-option values; the defaults are {defaults or 'none'}") from exc
    backbone.provenance.setdefault("source", model)
    if weights is None and entry.weights == "random init":
        backbone.notes.append(f"random weights (seeded): train with `kit train {modality} --model {model}` or pass --weights")
    return apply_weights(backbone, weights), dict(entry.defaults)


def _resolve_checkpoint(directory: Path, modality: str) -> tuple[Backbone, dict[str, Any]]:
    """A `kit train` checkpoint: its recorded source, resolved here, with the trained weights loaded into it."""
    record = read_checkpoint(directory)
    if record["modality"] != modality:
        raise UsageError(f"{directory} is a checkpoint for {record['modality']}", f"run `kit build {record['modality']} --model {directory}`")
    weights = directory / record.get("weights_file", WEIGHTS_FILE)
    # `task` is recorded by `kit train --task classify` (a head added to a base model); `native_frames` by
    # `--native-frames`: the recorded values win over the source's defaults, as the weights were trained with them.
    backbone, defaults = resolve_backbone(record["source"], modality, task=record.get("task", "auto"),
                                          options=record.get("source_options") or {}, weights=weights)
    if record["spec"].get("native_frames"):
        backbone.native_frames = int(record["spec"]["native_frames"])
    backbone.head_trained = True
    backbone.provenance.update({"checkpoint": str(directory), "trained_from": record["source"]})
    return backbone, {**defaults, **record["spec"]}


def _refuse_unknown_options(model: str, factory: Callable[..., Any], options: dict[str, Any],
                            set_by_the_kit: tuple[str, ...] = ()) -> Mapping[str, inspect.Parameter]:
    """Refuse a --model-option the factory does not take (or one the kit sets itself); return its parameters."""
    parameters = {name: p for name, p in inspect.signature(factory).parameters.items() if name not in set_by_the_kit}
    kit_set = sorted(set(options) & set(set_by_the_kit))
    if "num_classes" in kit_set:
        raise UsageError(f"num_classes is not a model option of '{model}'",
                         "name the classes with --classes, e.g. --classes real,ai")
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise UsageError(f"'{model}' takes no option '{unknown[0]}'",
                         f"its options are: {', '.join(sorted(parameters)) or 'none'}")
    return parameters
