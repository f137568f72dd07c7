"""`kit build` as a library call: resolve → wrap → emit each format → verify by running → files + manifest.

One wrapped `Detector` is built; each requested format emits an artifact from it
(`FORMATS`): `onnx` (`<modality>_detector.onnx`, verified in onnxruntime against
PyTorch) and `bundle` (`bundle/` holding model_config.yaml, model.py and
model.safetensors, loaded in a clean process as the evaluator loads it and
compared with PyTorch and with the ONNX twin). Nothing lands in the output folder
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
    if request.with_embeddings and "onnx" not in request.formats:
        raise UsageError("--with-embeddings writes ONNX files", "add --format onnx or --format both")
    final_path = out_dir / artifact_file_name(spec)
    if final_path.exists() and not request.force:
        raise OutputExistsError(final_path)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out_dir} ({exc.strerror})", "choose a writable --out folder") from exc
    if not os.access(out_dir, os.W_OK):
        raise UsageError(f"cannot write to {out_dir}", "choose a writable --out folder")
    try:
        return _build_into(request, backbone, spec, out_dir, final_path, step, on_verify, started)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # leave no empty folder behind a failed build
        raise


def _build_into(request: BuildRequest, backbone: Backbone, spec: DetectorSpec, out_dir: Path, final_path: Path,
                step: Callable[[str], None], on_verify: Callable[[int, int], None] | None, started: float) -> BuildResult:
    """Wrap, emit every requested format, verify and write into an existing `out_dir` (see `build_detector`)."""
    step("wrapping: uint8 in, normalise in-graph"
         + (f", frames → {spec.native_frames} native ({spec.frame_mapping})" if spec.modality == "video" and spec.native_frames else "")
         + f", {spec.task}")
    torch.manual_seed(0)
    detector = Detector(backbone, spec).eval()
    recipe = None
    if "bundle" in request.formats:  # refuse a backbone model.py could not rebuild before any export work
        from discriminator.bundle.emit import recipe_for

        recipe = recipe_for(backbone, request.source_options)
    embed_backbone = embeddings_backbone(backbone) if request.with_embeddings else None
    result = BuildResult(spec=spec, manifest_path=out_dir / "manifest.json", total_seconds=0.0, notes=list(backbone.notes),
                         head_trained=backbone.head_trained, formats=request.formats)
    artifacts: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix=".kit-build-", dir=out_dir) as work:
        work = Path(work)
        work_onnx: Path | None = None
        if "onnx" in request.formats:
            step(f"exporting with {request.exporter} (opset {request.opset})")
            work_onnx, result.export_seconds, result.verify = _export_verified(detector, spec, work / final_path.name,
                                                                               request, step, on_verify)
            if embed_backbone is not None:
                embed_spec = spec.replace(task="embeddings", temporal_aggregation=(
                    "mean_features" if spec.modality == "video" and embed_backbone.input_kind == "frames" else spec.temporal_aggregation))
                step("exporting the base model's embeddings too")
                embed_work, _, _ = _export_verified(Detector(embed_backbone, embed_spec).eval(), embed_spec,
                                                    work / f"{spec.name}_embed.onnx", request, step, None)
                shutil.copyfile(work_onnx, work / f"{spec.name}_class.onnx")
                result.extra_files = [out_dir / embed_work.name, out_dir / f"{spec.name}_class.onnx"]
        work_bundle: Path | None = None
        if "bundle" in request.formats:
            from discriminator.bundle.emit import write_bundle
            from discriminator.bundle.verify import verify_bundle

            work_bundle = work / BUNDLE_DIR
            work_bundle.mkdir()
            step(f"writing the bundle (model.py + model_config.yaml + {request.dtype} safetensors)")
            emitted = write_bundle(detector, backbone, spec, work_bundle, recipe, dtype=request.dtype,
                                   frame_rate=request.frame_rate)
            step("verifying the bundle: loaded as the evaluator loads it, vs PyTorch"
                 + (" and the ONNX twin" if work_onnx else ""))
            result.bundle_verify = verify_bundle(work_bundle, detector, spec, request.dtype, onnx_path=work_onnx,
                                                 threads=request.threads, on_run=on_verify)
            result.bundle_files, result.bundle_size_bytes = emitted.files, emitted.size_bytes
        # Everything verified: replace what an earlier build left, then move the new artifacts into place.
        if request.force:
            result.removed = _remove_superseded(out_dir, spec, keep_onnx=work_onnx is not None,
                                                keep_bundle=work_bundle is not None)
        if work_onnx is not None:
            for extra in result.extra_files:
                os.replace(work / extra.name, extra)
            os.replace(work_onnx, final_path)
            result.onnx_path = final_path
            result.size_bytes = final_path.stat().st_size
            result.sha256 = sha256_file(final_path)
            artifacts["onnx"] = {"files": {final_path.name: result.sha256}, "size_bytes": result.size_bytes,
                                 "export": {"exporter": request.exporter, "opset": request.opset,
                                            "torch": torch.__version__, "seconds": round(result.export_seconds, 3)},
                                 "parity": result.verify.to_dict()}
        if work_bundle is not None:
            target = out_dir / BUNDLE_DIR
            if target.exists():
                shutil.rmtree(target)
            os.replace(work_bundle, target)
            result.bundle_dir = target
            artifacts["bundle"] = {"dir": BUNDLE_DIR, "files": result.bundle_files, "dtype": request.dtype,
                                   "frame_rate": request.frame_rate, "size_bytes": result.bundle_size_bytes,
                                   "parity": result.bundle_verify.to_dict()}
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
        manifest.update({"onnx_file": final_path.name, "export": artifacts["onnx"]["export"],
                         "parity": artifacts["onnx"]["parity"], "sha256": result.sha256, "size_bytes": result.size_bytes})
    result.manifest_path = write_manifest(out_dir, manifest)
    result.total_seconds = time.perf_counter() - started
    return result


def _remove_superseded(out_dir: Path, spec: DetectorSpec, keep_onnx: bool, keep_bundle: bool) -> list[Path]:
    """Before a forced rebuild lands: the previous build's zips and records (they hold the old model) and any
    artifact this build does not replace (an old ONNX file beside a bundle-only rebuild)."""
    removed: list[Path] = []
    for record in sorted(out_dir.glob("*.zip.json")):
        for path in (record.with_suffix(""), record):
            if path.is_file():
                path.unlink()
                removed.append(path)
    for stray in sorted(out_dir.glob("*.zip")):
        if stray.is_file() and stray.stem.endswith(("_detector", "_bundle")):
            stray.unlink()
            removed.append(stray)
    old_onnx, old_bundle = out_dir / artifact_file_name(spec), out_dir / BUNDLE_DIR
    if not keep_onnx and old_onnx.is_file():
        old_onnx.unlink()
        removed.append(old_onnx)
    if not keep_bundle and old_bundle.is_dir():
        shutil.rmtree(old_bundle)
        removed.append(old_bundle)
    return removed


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
