"""`py:<module-or-file.py>:<factory>` — a miner's own nn.Module.

The factory is called with the `--model-option k=v` pairs its signature takes and
returns either a `Backbone` (full control) or an `nn.Module`; the same call is
written into a bundle's `model.py`. A plain module may carry these optional attributes,
read by the kit: `input_kind` ("frames" per picture, or "clip" for `[B,T,3,H,W]`),
`native_frames`, `mean`, `std`, `class_names`. The module receives normalised
float32 input and returns logits (a tensor, an HF output with `.logits`, a dict
or a tuple).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from discriminator.errors import InputError, KitError, UsageError, first_line
from discriminator.sources.weights import apply_weights
from discriminator.wrapper import Backbone


@contextmanager
def _importable_from(folder: Path) -> Iterator[None]:
    """`folder` first on sys.path for one import, as when a script runs from there: `kit` is a console script, so
    neither the current folder nor a miner's file's own folder is on the path, and their sibling modules would not
    import."""
    entry = str(folder.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            sys.path.remove(entry)


def import_factory(target: str) -> Callable[[], object]:
    module_ref, sep, factory_name = target.rpartition(":")
    if not sep or not module_ref or not factory_name:
        raise UsageError(f"'py:{target}' is not of the form py:<module-or-file.py>:<factory>",
                         "e.g. --model py:my_detector.py:build_model")
    if module_ref.endswith(".py") or "/" in module_ref:
        path = Path(module_ref).expanduser()
        if not path.is_file():
            raise InputError(f"{path} does not exist", "check the path in py:<file.py>:<factory>")
        name = f"kit_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            with _importable_from(path.parent):
                spec.loader.exec_module(module)
        except Exception as exc:
            raise InputError(f"importing {path} failed: {type(exc).__name__}: {first_line(exc)}", "fix the error in your module") from exc
    else:
        try:
            with _importable_from(Path.cwd()):
                module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise InputError(f"cannot import module '{module_ref}' ({exc})", "check the name, or pass a file path: py:path/to/file.py:factory") from exc
        except Exception as exc:
            raise InputError(f"importing {module_ref} failed: {type(exc).__name__}: {first_line(exc)}", "fix the error in your module") from exc
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise UsageError(f"'{module_ref}' has no callable '{factory_name}'", "name the function that returns your nn.Module")
    return factory


#: --model-option keys the kit reads itself for a `py:` source, unless the factory takes a parameter of that name.
KIT_OPTIONS = ("input_kind", "native_frames")


def split_factory_options(factory: Callable[..., object], target: str,
                          options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options for the factory, options for the kit): every key the factory's signature takes goes to it (as
    docs/bundles.md promises), `input_kind`/`native_frames` otherwise to the kit, anything else is refused."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for_factory, for_kit = {}, {}
    for key, value in options.items():
        if key in parameters or (takes_any and key not in KIT_OPTIONS):
            for_factory[key] = value
        elif key in KIT_OPTIONS:
            for_kit[key] = value
        else:
            named = ", ".join(name for name, p in parameters.items()
                              if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD))
            raise UsageError(f"py:{target} takes no option '{key}'",
                             f"its factory's parameters are: {named or 'none'}; the kit's own: {', '.join(KIT_OPTIONS)}")
    return for_factory, for_kit


def load_python_backbone(target: str, weights: Path | None = None, task: str = "auto", modality: str = "image",
                         factory_options: dict[str, Any] | None = None) -> Backbone:
    """Call the factory with the --model-option keys it takes; a plain nn.Module is wrapped with the kit's defaults."""
    factory = import_factory(target)
    for_factory, for_kit = split_factory_options(factory, target, dict(factory_options or {}))
    input_kind, native_frames = for_kit.get("input_kind"), for_kit.get("native_frames")
    try:
        made = factory(**for_factory)
    except KitError:
        raise
    except Exception as exc:
        given = f" with {', '.join(f'{k}={v!r}' for k, v in for_factory.items())}" if for_factory else ""
        raise InputError(f"py:{target}{given} raised {type(exc).__name__}: {first_line(exc)}",
                         "fix the factory (or the --model-option values): it must return an nn.Module") from exc
    if isinstance(made, Backbone):
        backbone = made
    elif isinstance(made, nn.Module):
        default_kind = "frames" if modality == "image" else "clip"
        backbone = Backbone(
            module=made,
            input_kind=input_kind or getattr(made, "input_kind", default_kind),
            native_frames=native_frames or getattr(made, "native_frames", None),
            mean=tuple(getattr(made, "mean", (0.485, 0.456, 0.406))),
            std=tuple(getattr(made, "std", (0.229, 0.224, 0.225))),
            class_names=tuple(getattr(made, "class_names", ("real", "synthetic", "semisynthetic"))),
            head_trained=weights is not None,
            description=f"user module py:{target}",
        )
    else:
        raise UsageError(f"py:{target} returned a {type(made).__name__}, not an nn.Module", "make the factory return your model")
    if task == "embeddings":
        raise UsageError("--task embeddings is for Hugging Face base models", "use hf:<base-model-id>, or export your own embedding module with --task classify")
    backbone.provenance["source"] = f"py:{target}"
    backbone.provenance["factory_options"] = for_factory
    if weights is None:
        backbone.notes.append("no --weights given: the module's own initialisation is exported as is")
    return apply_weights(backbone, weights)
