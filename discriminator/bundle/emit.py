"""Write a wrapped detector as a bundle: `model.py` from the template, `model_config.yaml`, `model.safetensors`.

`model.py` is discriminator/bundle/template.py with its two `# <kit:…>` sections
filled in: the settings (classes, normalisation, frame mapping, temperature) from
the spec, and the backbone from a `BundleRecipe` — the example networks' own
source file, a miner's single-file `py:` module, or, for Hugging Face models, the
transformers classes rebuilt from the checkpoint's config carried as a literal.
Every recipe's source goes through the static analyzer before it is embedded, so
a backbone the evaluator would refuse stops the build with its file and line.
"""

from __future__ import annotations

import ast
import copy
import json
import pprint
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discriminator import __version__
from discriminator.errors import ExportError, UsageError
from discriminator.spec import DetectorSpec, sha256_file
from discriminator.wrapper import Backbone, BundleRecipe

TEMPLATE_PATH = Path(__file__).with_name("template.py")
CONFIG_FILE = "model_config.yaml"
MODEL_FILE = "model.py"
WEIGHTS_FILE = "model.safetensors"
BUNDLE_FILES = (CONFIG_FILE, MODEL_FILE, WEIGHTS_FILE)
#: `--dtype` choices: what `model_config.yaml` says and what the weights are stored in.
BUNDLE_DTYPES = ("float32", "float16", "bfloat16")
#: Names the template defines; an embedded backbone must not define them again.
TEMPLATE_NAMES = frozenset({"MODALITY", "CLASS_NAMES", "MEAN", "STD", "INPUT_KIND", "NATIVE_FRAMES", "TEMPERATURE",
                            "build_backbone", "uniform_frame_indices", "class_logits", "SN34Detector", "load_model",
                            "load_safetensors_into"})
_SECTION = r"(# <kit:{name}>\n)(.*?)(# </kit:{name}>\n)"


class BundleSourceError(ExportError):
    """The backbone's source cannot go into a model.py the evaluator would accept."""


@dataclass(frozen=True)
class EmittedBundle:
    """The files written, with their sha256."""

    directory: Path
    files: dict[str, str]
    dtype: str
    size_bytes: int


# -- recipes ---------------------------------------------------------------------------------------------------

def require_clean_source(source: str, origin: str) -> None:
    """Refuse source the evaluator's static analysis (read conservatively) would reject, naming file and line."""
    from discriminator.bundle.analyzer import analyze_source

    violations = analyze_source(source, filename=origin)
    if violations:
        first = violations[0]
        more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
        raise BundleSourceError(f"{origin}:{first.line}: {first.message}{more}",
                                f"{first.fix}; a bundle's model.py must stand alone (docs/bundles.md)")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:  # the analyzer reports these too; kept for a source it did not see
        raise BundleSourceError(f"{origin}:{exc.lineno}: syntax error", "fix the file") from exc
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        clash = sorted(set(names) & TEMPLATE_NAMES)
        if clash:
            raise BundleSourceError(f"{origin}:{node.lineno}: defines {clash[0]}, which the bundle's model.py defines itself",
                                    f"rename {clash[0]} in your module")


def hf_recipe(module: Any) -> BundleRecipe:
    """Rebuild a transformers model (or the kit's pooled linear head on one) from its config, no download."""
    import transformers

    from discriminator.sources.huggingface import PooledLinearHead

    head_source = ""
    base = module
    if isinstance(module, PooledLinearHead):
        base = module.base
        head_source = (Path(__file__).with_name("hf_pooled_head.py")).read_text(encoding="utf-8")
    if not isinstance(base, transformers.PreTrainedModel):
        raise BundleSourceError(f"cannot rebuild a {type(base).__name__} inside model.py",
                                "use --format onnx, or build from a source whose module the kit knows")
    model_class, config_class = type(base).__name__, type(base.config).__name__
    for name in (model_class, config_class):
        if not hasattr(transformers, name):
            raise BundleSourceError(f"transformers exports no {name}, so model.py cannot rebuild this model",
                                    "use --format onnx for this architecture")
    config = json.loads(base.config.to_json_string(use_diff=False))
    for private in [k for k in config if k.startswith("_")]:
        config.pop(private)
    literal = pprint.pformat(config, indent=4, width=110, sort_dicts=True)
    code = (f"from transformers import {config_class}, {model_class}\n\n"
            f"# The checkpoint's configuration (transformers {transformers.__version__}), so that model.py rebuilds the\n"
            f"# architecture without downloading anything; the weights come from the safetensors file.\n"
            f"HF_CONFIG = {literal}\n")
    build = f"{model_class}({config_class}.from_dict(HF_CONFIG))"
    if head_source:
        code += "\n\n" + head_source
        build = f"PooledLinearHead({build}, {module.head.in_features}, {module.head.out_features})"
    return BundleRecipe(code=code, build=build, origin=f"transformers {model_class}")


def python_source_recipe(source_ref: str, options: dict[str, Any]) -> BundleRecipe:
    """A miner's `py:<file-or-module>:<factory>` module, embedded when it is one file that passes the analyzer."""
    import importlib.util

    target = source_ref[3:] if source_ref.startswith("py:") else source_ref
    module_ref, _, factory = target.rpartition(":")
    path = Path(module_ref)
    if not (module_ref.endswith(".py") or "/" in module_ref):
        found = importlib.util.find_spec(module_ref)
        if found is None or not found.origin or not found.origin.endswith(".py"):
            raise BundleSourceError(f"cannot find the source file of module '{module_ref}'",
                                    "pass the file itself: --model py:path/to/file.py:factory")
        path = Path(found.origin)
    source = path.read_text(encoding="utf-8")
    require_clean_source(source, str(path))
    arguments = ", ".join(f"{key}={value!r}" for key, value in sorted(options.items()))
    return BundleRecipe(code=source, build=f"{factory}({arguments})", origin=str(path))


def recipe_for(backbone: Backbone, source_options: dict[str, Any]) -> BundleRecipe:
    """The recipe the source declared, else one derived from the module or the `py:` file."""
    if backbone.recipe is not None:
        require_clean_source(backbone.recipe.code, backbone.recipe.origin)
        return backbone.recipe
    source = str(backbone.provenance.get("source", ""))
    if source.startswith("py:"):
        return python_source_recipe(source, backbone.provenance.get("factory_options", source_options))
    return hf_recipe(backbone.module)


# -- rendering -------------------------------------------------------------------------------------------------

def _replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(_SECTION.format(name=name), re.S)
    if not pattern.search(text):
        raise RuntimeError(f"template.py has no # <kit:{name}> section")
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def render_model_py(spec: DetectorSpec, recipe: BundleRecipe, input_kind: str) -> str:
    """The template with this detector's settings and backbone filled in."""
    text = TEMPLATE_PATH.read_text(encoding="utf-8")
    settings = "\n".join([
        f"# Filled in by sn34-kit {__version__} for '{spec.name}'.",
        f"MODALITY = {spec.modality!r}",
        f"CLASS_NAMES = {tuple(spec.class_names)!r}",
        "# Normalisation on the [0, 1] scale: (x / 255 - MEAN) / STD, per RGB channel.",
        f"MEAN = {tuple(float(v) for v in spec.mean)!r}",
        f"STD = {tuple(float(v) for v in spec.std)!r}",
        '# "frames": the backbone sees one picture at a time; "clip": it sees [B, T, 3, H, W].',
        f"INPUT_KIND = {input_kind!r}",
        "# Video: the number of frames the backbone looks at (None: every frame it is given).",
        f"NATIVE_FRAMES = {spec.native_frames if spec.frame_mapping == 'uniform' else None!r}",
        "# Logits are divided by this (set by calibration; 1.0 leaves them as they are).",
        f"TEMPERATURE = {float(spec.temperature)!r}",
    ]) + "\n"
    backbone = (f"# Backbone source: {recipe.origin}.\n\n{recipe.code.rstrip()}\n\n\n"
                f"def build_backbone():\n    return {recipe.build}\n")
    text = _replace_section(text, "settings", settings)
    return _replace_section(text, "backbone", backbone)


def render_model_config(spec: DetectorSpec, dtype: str, frame_rate: float | None = None) -> str:
    """`model_config.yaml` with exactly the keys the evaluator reads (current-contract §2)."""
    lines = [
        f"# {spec.name}: {spec.modality} detector bundle written by sn34-kit {__version__}.",
        "# The SN34 evaluator reads exactly these keys; see docs/bundles.md.",
        f"dtype: {dtype}",
        "preprocessing:",
        f"  resize: [{spec.height}, {spec.width}]",
    ]
    if spec.modality == "video":
        lines.append(f"  num_frames: {spec.frames}")
        if frame_rate is not None:
            lines.append(f"  frame_rate: {float(frame_rate)!r}")
    # The head's own width: 3 for [real, synthetic, semisynthetic]; a 2-class build says 2, as its model.py emits.
    lines += ["model:", f"  num_classes: {len(spec.class_names)}", f"  weights_file: {WEIGHTS_FILE}"]
    return "\n".join(lines) + "\n"


def write_bundle(detector: Any, backbone: Backbone, spec: DetectorSpec, directory: Path, recipe: BundleRecipe,
                 dtype: str = "float32", frame_rate: float | None = None) -> EmittedBundle:
    """Write the three bundle files into `directory` (which must exist and be empty); `recipe` from `recipe_for`."""
    import torch
    from safetensors.torch import save_model

    if dtype not in BUNDLE_DTYPES:
        raise UsageError(f"--dtype {dtype!r} is not one of {', '.join(BUNDLE_DTYPES)}", "e.g. --dtype float16")
    if spec.task != "classify":
        raise UsageError("a bundle is a submission and needs a classifier; embeddings build as ONNX only",
                         "use --format onnx with --task embeddings")
    (directory / MODEL_FILE).write_text(render_model_py(spec, recipe, backbone.input_kind), encoding="utf-8")
    (directory / CONFIG_FILE).write_text(render_model_config(spec, dtype, frame_rate), encoding="utf-8")
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    stored = copy.deepcopy(detector).to(torch_dtype) if dtype != "float32" else detector
    save_model(stored, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "sn34_kit.spec": spec.to_json()})
    files = {name: sha256_file(directory / name) for name in BUNDLE_FILES}
    size = sum((directory / name).stat().st_size for name in BUNDLE_FILES)
    return EmittedBundle(directory=directory, files=files, dtype=dtype, size_bytes=size)
