"""`timm:<architecture>` — any timm image backbone with a classification head of the kit's classes.

`timm.create_model(name, pretrained=False, num_classes=K, **options)` builds it; the
model's own `pretrained_cfg` gives the input size and the normalisation. For video
the wrapper runs it on each frame and averages the logits. A bundle's `model.py`
makes the same call (timm is on the evaluator's allowlist and pinned in its
runtime), and the weights — random, `--weights` or trained — come from the
safetensors file. `--model-option pretrained=true` downloads timm's pretrained
weights for the backbone here (the network never downloads: model.py always says
`pretrained=False`).
"""

from __future__ import annotations

import difflib
from typing import Any

from discriminator.errors import HubUnreachableError, UsageError, first_line
from discriminator.wrapper import Backbone, BundleRecipe


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise UsageError(f"timm cannot be imported ({first_line(exc)})",
                         "install it with `make setup` (the kit pins timm 1.0.25, the evaluator's version)") from exc
    return timm


def load_timm_backbone(name: str, modality: str = "image", task: str = "auto", num_classes: int = 3,
                       pretrained: bool = False, **model_kwargs: Any) -> Backbone:
    """Build `name` from timm with a `num_classes`-wide head; `model_kwargs` go to `timm.create_model` and into model.py."""
    timm = _timm()
    if task not in ("auto", "classify"):
        raise UsageError("timm: sources build classifiers; --task embeddings is for hf: base models",
                         "leave --task out")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"timm has no architecture '{name}' (timm {timm.__version__})",
                         f"{hint}list them with python -c \"import timm; print(timm.list_models('vit*'))\"")
    try:
        module = timm.create_model(name, pretrained=bool(pretrained), num_classes=num_classes, **model_kwargs)
    except (OSError, ConnectionError) as exc:
        raise HubUnreachableError(f"timm could not download the pretrained weights of {name} ({first_line(exc)})",
                                  "drop --model-option pretrained=true and pass --weights with a local checkpoint") from exc
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        given = " ".join(f"{key}={value!r}" for key, value in model_kwargs.items())
        raise UsageError(f"timm.create_model('{name}'{', ' + given if given else ''}) failed: {first_line(exc)}",
                         "check the --model-option values against the architecture's arguments") from exc
    config = dict(getattr(module, "pretrained_cfg", None) or {})
    input_size = tuple(config.get("input_size") or (3, 224, 224))
    mean = tuple(float(v) for v in config.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(float(v) for v in config.get("std", (0.229, 0.224, 0.225)))
    kwargs_literal = "".join(f", {key}={value!r}" for key, value in sorted(model_kwargs.items()))
    recipe = BundleRecipe(
        code=f"import timm\n\n# timm {timm.__version__} architecture; the weights come from the safetensors file.\n"
             f"TIMM_ARCHITECTURE = {name!r}\n",
        build=f"timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes={num_classes}{kwargs_literal})",
        origin=f"timm {name}",
    )
    return Backbone(
        module=module.eval(),
        input_kind="frames",
        mean=mean if len(mean) == 3 else (0.485, 0.456, 0.406),
        std=std if len(std) == 3 else (0.229, 0.224, 0.225),
        head_trained=False,
        description=f"timm {name}" + (" (pretrained backbone)" if pretrained else ""),
        notes=[] if pretrained else [f"timm {name} with random weights: train it (`kit train {modality} --model "
                                     f"timm:{name}`) or pass --weights"],
        provenance={"source": f"timm:{name}", "timm": timm.__version__, "pretrained": bool(pretrained),
                    "input_size": [int(input_size[1]), int(input_size[2])], "model_kwargs": dict(model_kwargs)},
        recipe=recipe,
    )
