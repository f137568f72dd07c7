"""`kit build` as a library call: resolve → wrap → export → verify by running → write files + manifest.

Nothing lands in the output folder until the export has been verified: the work
happens in a temporary folder beside it and is moved into place at the end, so a
failed build never leaves a half-written model, and `--force` replaces an old
model only with one that passed.
"""

from __future__ import annotations

import hashlib
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
from discriminator.export_options import DEFAULT_OPSET
from discriminator.registry import resolve_backbone
from discriminator.spec import DEFAULT_CLASS_NAMES, VALIDATOR_DEFAULT_FRAMES, DetectorSpec, write_manifest
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


@dataclass
class BuildResult:
    spec: DetectorSpec
    onnx_path: Path
    manifest_path: Path
    export_seconds: float
    total_seconds: float
    size_bytes: int
    sha256: str
    verify: VerifyReport
    notes: list[str]
    head_trained: bool
    #: With `with_embeddings`: the `<name>_embed.onnx` and `<name>_class.onnx` files written beside the detector.
    extra_files: list[Path] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return self.verify.max_abs_diff


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
    native = request.native_frames or backbone.native_frames or defaults.get("native_frames")
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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        for existing in (out_dir / "manifest.json", out_dir / f"{request.modality}_detector.onnx"):
            if existing.exists():
                raise OutputExistsError(existing)
    step(f"resolving {request.model}")
    backbone, defaults = resolve_backbone(request.model, request.modality, task=request.task,
                                          weights=request.weights, options=dict(request.source_options))
    spec = make_spec(replace(request, name=name), backbone, defaults)
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
    """Wrap, export, verify and write into an existing `out_dir` (see `build_detector`)."""
    step("wrapping: uint8 in, normalise in-graph"
         + (f", frames → {spec.native_frames} native ({spec.frame_mapping})" if spec.modality == "video" and spec.native_frames else "")
         + f", {spec.task}")
    torch.manual_seed(0)
    detector = Detector(backbone, spec).eval()
    embed_backbone = embeddings_backbone(backbone) if request.with_embeddings else None
    extra_files: list[Path] = []
    with tempfile.TemporaryDirectory(prefix=".kit-build-", dir=out_dir) as work:
        step(f"exporting with {request.exporter} (opset {request.opset})")
        work_path, export_seconds, verify = _export_verified(detector, spec, Path(work) / final_path.name, request,
                                                             step, on_verify)
        if embed_backbone is not None:
            embed_spec = spec.replace(task="embeddings", temporal_aggregation=(
                "mean_features" if spec.modality == "video" and embed_backbone.input_kind == "frames" else spec.temporal_aggregation))
            step("exporting the base model's embeddings too")
            embed_work, _, _ = _export_verified(Detector(embed_backbone, embed_spec).eval(), embed_spec,
                                                Path(work) / f"{spec.name}_embed.onnx", request, step, None)
            extra_files = [out_dir / embed_work.name, out_dir / f"{spec.name}_class.onnx"]
            os.replace(embed_work, extra_files[0])
            shutil.copyfile(work_path, extra_files[1])
        os.replace(work_path, final_path)
    size = final_path.stat().st_size
    digest = sha256_file(final_path)
    notes = list(backbone.notes)
    if spec.task == "classify" and not backbone.head_trained:
        notes.append("UNTRAINED HEAD: this model's class logits come from random weights; it will score ~chance on the network")
    manifest = {
        "kit_version": __version__,
        "spec": spec.to_dict(),
        "onnx_file": final_path.name,
        "extra_files": [p.name for p in extra_files],
        "source": {"model": request.model, "weights": str(request.weights) if request.weights else None,
                   "description": backbone.description, **backbone.provenance},
        "head_trained": backbone.head_trained,
        "export": {"exporter": request.exporter, "opset": request.opset, "torch": torch.__version__,
                   "seconds": round(export_seconds, 3)},
        "parity": verify.to_dict(),
        "sha256": digest,
        "size_bytes": size,
        "notes": notes,
    }
    manifest_path = write_manifest(out_dir, manifest)
    return BuildResult(spec=spec, onnx_path=final_path, manifest_path=manifest_path, export_seconds=export_seconds,
                       total_seconds=time.perf_counter() - started, size_bytes=size, sha256=digest, verify=verify,
                       notes=notes, head_trained=backbone.head_trained, extra_files=extra_files)


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
