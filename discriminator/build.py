"""`kit build` as a library call: resolve → wrap → emit each format → verify by running → files + manifest.

One wrapped `Detector` is built; each requested format's row (formats.py) plans,
emits, verifies and installs an artifact from it through the hooks below: `onnx`
(`<modality>_detector.onnx`, verified in onnxruntime against PyTorch) and `bundle`
(`bundle/` holding model_config.yaml, model.py and model.safetensors, loaded in a
clean process as the evaluator loads it and compared with PyTorch and with the ONNX
twin). Nothing lands in the output folder
until every artifact has been verified: the work happens in a temporary folder
beside it and is moved into place at the end, so a failed build never leaves a
half-written model, and `--force` replaces an old build only with one that passed
— removing the zips packaged from the build it replaces, which would otherwise
sit beside the new model holding the old one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from discriminator import __version__
from discriminator.bundle.emit import recipe_for, write_bundle
from discriminator.bundle.verify import verify_bundle
from discriminator.errors import OutputExistsError, UsageError
from discriminator.export import VerifyReport, check_input_contract, export_onnx, verify_parity
from discriminator.formats import BUNDLE_DIR, FORMATS, resolve_formats
from discriminator.export_options import DEFAULT_OPSET
from discriminator.registry import resolve_backbone
from discriminator.spec import DEFAULT_CLASS_NAMES, VALIDATOR_DEFAULT_FRAMES, DetectorSpec, sha256_file, write_manifest
from discriminator.wrapper import Backbone, Detector

DEFAULT_SUBMISSIONS_DIR = Path("submissions")


@dataclass
class BuildRequest:
    """Everything `kit build` takes; the CLI fills it from flags."""

    modality: str
    model: str
    name: str | None = None
    weights: Path | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    native_frames: int | None = None
    class_names: tuple[str, ...] | None = None
    task: str = "auto"
    opset: int = DEFAULT_OPSET
    exporter: str = "torchscript"
    out_dir: Path | None = None
    force: bool = False
    threads: int | None = None
    #: Also write `<name>_embed.onnx` (the classifier's base model) and `<name>_class.onnx` (a copy of the detector).
    with_embeddings: bool = False
    #: Passed to the source factory (e.g. `config=` for HF classes built without a download).
    source_options: dict[str, Any] = field(default_factory=dict)
    #: Artifact formats to emit (see discriminator.formats); None → both for classifiers, onnx for embeddings.
    formats: tuple[str, ...] | None = None
    #: The bundle's `dtype` (what the evaluator moves the module to) and the dtype its weights are stored in.
    dtype: str = "float32"
    #: Video bundles: `preprocessing.frame_rate` (the evaluator then takes every round(fps / rate)-th frame).
    frame_rate: float | None = None


@dataclass
class BuildResult:
    spec: DetectorSpec
    manifest_path: Path
    total_seconds: float
    notes: list[str]
    head_trained: bool
    formats: tuple[str, ...]
    #: ONNX: the file, its export time, size, sha256 and the onnxruntime-vs-PyTorch report (None without onnx).
    onnx_path: Path | None = None
    export_seconds: float = 0.0
    size_bytes: int = 0
    sha256: str = ""
    verify: VerifyReport | None = None
    #: Bundle: the folder, its files' sha256, size, and the evaluator-style load report (None without bundle).
    bundle_dir: Path | None = None
    bundle_files: dict[str, str] = field(default_factory=dict)
    bundle_size_bytes: int = 0
    bundle_verify: Any = None
    #: With `with_embeddings`: the `<name>_embed.onnx` and `<name>_class.onnx` files written beside the detector.
    extra_files: list[Path] = field(default_factory=list)
    #: Zips and records of an earlier build that a forced rebuild removed.
    removed: list[Path] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return self.verify.max_abs_diff if self.verify else 0.0

    @property
    def out_dir(self) -> Path:
        return self.manifest_path.parent


def default_name(model: str) -> str:
    """A folder-friendly name for a source string."""
    if model.startswith("hf:"):
        base = model[3:].rstrip("/").split("/")[-1]
    elif model.startswith("py:"):
        base = model.rsplit(":", 1)[-1]
    else:
        base = Path(model).name if os.sep in model or Path(model).is_dir() else model
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-").lower() or "detector"


def make_spec(request: BuildRequest, backbone: Backbone, defaults: dict[str, Any]) -> DetectorSpec:
    """The spec the wrapper and every later stage follow: flags > source defaults > kit defaults."""
    video = request.modality == "video"
    native = _given(request.native_frames, backbone.native_frames or defaults.get("native_frames"))
    if backbone.input_kind == "frames":
        aggregation = "mean_logits" if backbone.task == "classify" else "mean_features"
    else:
        aggregation = "backbone"
    fields: dict[str, Any] = dict(
        name=request.name or default_name(request.model),
        modality=request.modality,
        height=_given(request.height, defaults.get("height", 224)),
        width=_given(request.width, defaults.get("width", 224)),
        frames=_given(request.frames, defaults.get("frames", VALIDATOR_DEFAULT_FRAMES)) if video else None,
        native_frames=native if video else None,
        frame_mapping=("uniform" if native else "all") if video else "none",
        temporal_aggregation=aggregation if video else "none",
        class_names=tuple(request.class_names or defaults.get("class_names") or backbone.class_names or DEFAULT_CLASS_NAMES),
        mean=tuple(defaults.get("mean", backbone.mean)),
        std=tuple(defaults.get("std", backbone.std)),
        task=backbone.task,
        temperature=float(defaults.get("temperature", 1.0)),
    )
    return DetectorSpec(**fields)


def _given(value: Any, fallback: Any) -> Any:
    """A flag's value when it was given (0 included, so the spec can refuse it), else the fallback."""
    return fallback if value is None else value


def artifact_file_name(spec: DetectorSpec) -> str:
    return f"{spec.name}_embed.onnx" if spec.task == "embeddings" else f"{spec.artifact_stem}.onnx"


def build_detector(request: BuildRequest, on_step: Callable[[str], None] | None = None,
                   on_verify: Callable[[int, int], None] | None = None) -> BuildResult:
    """Run the whole build; see the module docstring. `on_step` gets a line per stage."""
    step = on_step or (lambda _message: None)
    started = time.perf_counter()
    if request.modality not in ("image", "video"):
        raise UsageError(f"modality must be image or video, got '{request.modality}'", "run `kit build image …` or `kit build video …`")
    name = request.name or default_name(request.model)
    out_dir = Path(request.out_dir) if request.out_dir else DEFAULT_SUBMISSIONS_DIR / name
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file, not a folder", "choose another --out")
    if not request.force:
        for existing in (out_dir / "manifest.json", out_dir / f"{request.modality}_detector.onnx", out_dir / BUNDLE_DIR):
            if existing.exists():
                raise OutputExistsError(existing)
    step(f"resolving {request.model}")
    backbone, defaults = resolve_backbone(request.model, request.modality, task=request.task,
                                          weights=request.weights, options=dict(request.source_options),
                                          num_classes=len(request.class_names) if request.class_names else None)
    spec = make_spec(replace(request, name=name), backbone, defaults)
    request = replace(request, formats=resolve_formats(request.formats, spec.task))
    if request.with_embeddings and not any(FORMATS[fmt].carries_embeddings for fmt in request.formats):
        raise UsageError("--with-embeddings writes ONNX files", "add --format onnx or --format both")
    for existing in (row.target(out_dir, spec) for row in FORMATS.values()):
        if existing.exists() and not request.force:
            raise OutputExistsError(existing)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out_dir} ({exc.strerror})", "choose a writable --out folder") from exc
    if not os.access(out_dir, os.W_OK):
        raise UsageError(f"cannot write to {out_dir}", "choose a writable --out folder")
    try:
        return _build_into(request, backbone, spec, out_dir, step, on_verify, started)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # leave no empty folder behind a failed build
        raise


@dataclass
class BuildStage:
    """What a format's build hooks share (formats.py: `plan`, `emit`, `verify`, `install`): the request, the wrapped
    detector, the scratch folder, the result they fill in, and the paths the formats emitted so far (in emit order,
    so the bundle is compared with its ONNX twin)."""

    request: BuildRequest
    backbone: Backbone
    detector: Detector
    spec: DetectorSpec
    work: Path
    result: BuildResult
    step: Callable[[str], None]
    on_verify: Callable[[int, int], None] | None
    #: What each format's `plan` returned (the bundle: the recipe model.py rebuilds the backbone with).
    plans: dict[str, Any] = field(default_factory=dict)
    emitted: dict[str, Path] = field(default_factory=dict)


def _build_into(request: BuildRequest, backbone: Backbone, spec: DetectorSpec, out_dir: Path,
                step: Callable[[str], None], on_verify: Callable[[int, int], None] | None, started: float) -> BuildResult:
    """Wrap, emit and verify every requested format, then move them into an existing `out_dir` (see `build_detector`)."""
    step("wrapping: uint8 in, normalise in-graph"
         + (f", frames → {spec.native_frames} native ({spec.frame_mapping})" if spec.modality == "video" and spec.native_frames else "")
         + f", {spec.task}")
    torch.manual_seed(0)
    detector = Detector(backbone, spec).eval()
    # Each format refuses what it cannot write (a backbone model.py could not rebuild) before any export work.
    plans = {fmt: FORMATS[fmt].plan(request, backbone) for fmt in request.formats}
    result = BuildResult(spec=spec, manifest_path=out_dir / "manifest.json", total_seconds=0.0, notes=list(backbone.notes),
                         head_trained=backbone.head_trained, formats=request.formats)
    artifacts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=".kit-build-", dir=out_dir) as work:
        stage = BuildStage(request, backbone, detector, spec, Path(work), result, step, on_verify, plans)
        for fmt in request.formats:
            row = FORMATS[fmt]
            stage.emitted[fmt] = row.emit(stage)
            row.verify(stage, stage.emitted[fmt])
        # Everything verified: replace what an earlier build left, then move the new artifacts into place.
        if request.force:
            result.removed = _remove_superseded(out_dir, spec, keep=tuple(stage.emitted))
        for fmt, emitted in stage.emitted.items():
            artifacts[fmt] = FORMATS[fmt].install(stage, emitted, out_dir)
    if spec.task == "classify" and not backbone.head_trained:
        result.notes.append("UNTRAINED HEAD: this model's class logits come from random weights; it will score ~chance on the network")
    manifest = {
        "kit_version": __version__,
        "spec": spec.to_dict(),
        "formats": list(request.formats),
        "artifacts": artifacts,
        "extra_files": [p.name for p in result.extra_files],
        "source": {"model": request.model, "weights": str(request.weights) if request.weights else None,
                   "description": backbone.description, **backbone.provenance},
        "head_trained": backbone.head_trained,
        "notes": result.notes,
    }
    if result.onnx_path is not None:  # the ONNX-era keys, read by tools written before bundles
        manifest.update({"onnx_file": result.onnx_path.name, "export": artifacts["onnx"]["export"],
                         "parity": artifacts["onnx"]["parity"], "sha256": result.sha256, "size_bytes": result.size_bytes})
    result.manifest_path = write_manifest(out_dir, manifest)
    result.total_seconds = time.perf_counter() - started
    return result


def _remove_superseded(out_dir: Path, spec: DetectorSpec, keep: tuple[str, ...]) -> list[Path]:
    """Before a forced rebuild lands: the previous build's zips and records (they hold the old model) and any
    artifact this build does not replace (an old ONNX file beside a bundle-only rebuild)."""
    removed: list[Path] = []
    for record in sorted(out_dir.glob("*.zip.json")):
        for path in (record.with_suffix(""), record):
            if path.is_file():
                path.unlink()
                removed.append(path)
    for stray in sorted(out_dir.glob("*.zip")):
        if stray.is_file() and stray.stem.endswith(tuple(row.zip_stem.format(modality="") for row in FORMATS.values())):
            stray.unlink()
            removed.append(stray)
    for fmt, row in FORMATS.items():
        old = row.target(out_dir, spec)
        if fmt in keep or not old.exists():
            continue
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
        removed.append(old)
    return removed


# ---------------------------------------------------------------------------- the onnx row's build hooks


def onnx_target(out_dir: Path, spec: DetectorSpec) -> Path:
    """Where the ONNX model lands in a build folder."""
    return out_dir / artifact_file_name(spec)


def plan_onnx(request: BuildRequest, backbone: Backbone) -> Backbone | None:
    """With --with-embeddings: the base model the embeddings come from (refused up front when there is none)."""
    return embeddings_backbone(backbone) if request.with_embeddings else None


def emit_onnx(stage: BuildStage) -> Path:
    """Export the detector to ONNX in the scratch folder and read its input back; with --with-embeddings, also the base
    model's embeddings (`<name>_embed.onnx`, verified) and a copy of the detector (`<name>_class.onnx`)."""
    request, spec = stage.request, stage.spec
    stage.step(f"exporting with {request.exporter} (opset {request.opset})")
    path = stage.work / artifact_file_name(spec)
    stage.result.export_seconds = export_onnx(stage.detector, spec, path, opset=request.opset, exporter=request.exporter)
    check_input_contract(path, spec)
    embed_backbone = stage.plans["onnx"]
    if embed_backbone is not None:
        embed_spec = spec.replace(task="embeddings", temporal_aggregation=(
            "mean_features" if spec.modality == "video" and embed_backbone.input_kind == "frames" else spec.temporal_aggregation))
        stage.step("exporting the base model's embeddings too")
        embed_work, _, _ = _export_verified(Detector(embed_backbone, embed_spec).eval(), embed_spec,
                                            stage.work / f"{spec.name}_embed.onnx", request, stage.step, None)
        shutil.copyfile(path, stage.work / f"{spec.name}_class.onnx")
        stage.result.extra_files = [embed_work, stage.work / f"{spec.name}_class.onnx"]
    return path


def verify_onnx(stage: BuildStage, path: Path) -> None:
    """Run the ONNX file in onnxruntime against PyTorch at fresh batch sizes (and frame counts)."""
    stage.step("verifying: onnxruntime vs PyTorch at fresh batch sizes" + (" and frame counts" if stage.spec.modality == "video" else ""))
    stage.result.verify = verify_parity(stage.detector, path, stage.spec, threads=stage.request.threads,
                                        on_run=stage.on_verify)


def install_onnx(stage: BuildStage, path: Path, out_dir: Path) -> dict[str, Any]:
    """Move the ONNX file (and the --with-embeddings extras) into the build folder; return its manifest entry."""
    request, result = stage.request, stage.result
    for extra in result.extra_files:
        os.replace(extra, out_dir / extra.name)
    result.extra_files = [out_dir / extra.name for extra in result.extra_files]
    final_path = onnx_target(out_dir, stage.spec)
    os.replace(path, final_path)
    result.onnx_path = final_path
    result.size_bytes = final_path.stat().st_size
    result.sha256 = sha256_file(final_path)
    return {"files": {final_path.name: result.sha256}, "size_bytes": result.size_bytes,
            "export": {"exporter": request.exporter, "opset": request.opset,
                       "torch": torch.__version__, "seconds": round(result.export_seconds, 3)},
            "parity": result.verify.to_dict()}


# ---------------------------------------------------------------------------- the bundle row's build hooks


def bundle_target(out_dir: Path, spec: DetectorSpec) -> Path:
    """Where the bundle lands in a build folder."""
    return out_dir / BUNDLE_DIR


def plan_bundle(request: BuildRequest, backbone: Backbone) -> Any:
    """The recipe model.py rebuilds the backbone with; refuses a backbone it could not rebuild."""
    return recipe_for(backbone, request.source_options)


def emit_bundle(stage: BuildStage) -> Path:
    """Write model.py, model_config.yaml and the safetensors weights into `bundle/` in the scratch folder."""
    request, result = stage.request, stage.result
    folder = stage.work / BUNDLE_DIR
    folder.mkdir()
    stage.step(f"writing the bundle (model.py + model_config.yaml + {request.dtype} safetensors)")
    emitted = write_bundle(stage.detector, stage.backbone, stage.spec, folder, stage.plans["bundle"],
                           dtype=request.dtype, frame_rate=request.frame_rate)
    result.bundle_files, result.bundle_size_bytes = emitted.files, emitted.size_bytes
    return folder


def verify_emitted_bundle(stage: BuildStage, folder: Path) -> None:
    """Load the bundle in a clean process as the evaluator does; compare it with PyTorch and the ONNX twin, if built."""
    twin = stage.emitted.get("onnx")
    stage.step("verifying the bundle: loaded as the evaluator loads it, vs PyTorch" + (" and the ONNX twin" if twin else ""))
    stage.result.bundle_verify = verify_bundle(folder, stage.detector, stage.spec, stage.request.dtype, onnx_path=twin,
                                               threads=stage.request.threads, on_run=stage.on_verify)


def install_bundle(stage: BuildStage, folder: Path, out_dir: Path) -> dict[str, Any]:
    """Move `bundle/` into the build folder (replacing an older one); return its manifest entry."""
    request, result = stage.request, stage.result
    target = bundle_target(out_dir, stage.spec)
    if target.exists():
        shutil.rmtree(target)
    os.replace(folder, target)
    result.bundle_dir = target
    return {"dir": BUNDLE_DIR, "files": result.bundle_files, "dtype": request.dtype,
            "frame_rate": request.frame_rate, "size_bytes": result.bundle_size_bytes,
            "parity": result.bundle_verify.to_dict()}


def _export_verified(detector: Detector, spec: DetectorSpec, path: Path, request: BuildRequest,
                     step: Callable[[str], None], on_verify: Callable[[int, int], None] | None) -> tuple[Path, float, VerifyReport]:
    """Export to `path`, read its input back and verify it by running; returns (path, export seconds, report)."""
    seconds = export_onnx(detector, spec, path, opset=request.opset, exporter=request.exporter)
    check_input_contract(path, spec)
    step("verifying: onnxruntime vs PyTorch at fresh batch sizes" + (" and frame counts" if spec.modality == "video" else ""))
    return path, seconds, verify_parity(detector, path, spec, threads=request.threads, on_run=on_verify)


def embeddings_backbone(backbone: Backbone) -> Backbone:
    """The base model under a Hugging Face classifier, as an embeddings backbone (same input handling)."""
    base = getattr(backbone.module, "base_model", None)
    if base is None or base is backbone.module or backbone.task != "classify":
        raise UsageError("--with-embeddings needs a Hugging Face classifier (its base model gives the embeddings)",
                         "use an hf: source, or build a base model with --task embeddings")
    return Backbone(module=base, input_kind=backbone.input_kind, task="embeddings", native_frames=backbone.native_frames,
                    mean=backbone.mean, std=backbone.std, description=f"base of {backbone.description}")
