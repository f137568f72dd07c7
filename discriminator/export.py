"""Export a wrapped Detector to ONNX and prove, by running it, that the file keeps the contract.

Exporters are a table (`EXPORTERS`): `torchscript` (torch.onnx's tracing exporter,
fast and mature) and `dynamo` (torch.export based). Whichever runs, the result is
verified the same way: the file's input is read back (uint8; batch and frames
symbolic; 3, H, W fixed — exporters can silently specialise a dim), then
onnxruntime runs it at batch sizes and frame counts different from the export
dummy and its outputs are compared with PyTorch's.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from discriminator.errors import ExportError, ParityError, UsageError, first_line
from discriminator.export_options import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from discriminator.spec import SPEC_METADATA_KEY, DetectorSpec
#: Shapes of the dummy input traced at export: ≥ 2 so no axis is specialised to 0/1.
EXPORT_DUMMY_BATCH, EXPORT_DUMMY_FRAMES = 3, 6
#: Verification shapes: all differ from the dummy where it matters (contract: batch 32 image, 4 video).
VERIFY_BATCHES = (1, 2, 5)
VERIFY_FRAMES = (1, 7, 16, 33, 64)
#: Parity tolerance = ATOL + RTOL × the largest |value| PyTorch produced in that run. Float32 rounding grows with
#: magnitude (≈1e-5 relative through a deep net), so a confident detector with logits of ±11 legitimately differs by
#: ~1.5e-4; a graph that really computes something else (a frozen axis, a wrong frame) differs by far more.
PARITY_ATOL, PARITY_RTOL = 1e-4, 1e-4
#: Embedding tensors are larger in magnitude than logits; their absolute floor is looser.
EMBEDDING_ATOL = 1e-3


def parity_tolerance(reference: list[np.ndarray], task: str = "classify") -> float:
    """The tolerance for one verification run, scaled to the reference outputs' magnitude."""
    scale = max((float(np.max(np.abs(r))) for r in reference if r.size), default=0.0)
    return (PARITY_ATOL if task == "classify" else EMBEDDING_ATOL) + PARITY_RTOL * scale


@dataclass
class ParityRow:
    batch: int
    frames: int | None
    max_abs_diff: float
    onnx_ms: float
    torch_ms: float
    #: None for random pixels, else the constant value of every pixel.
    fill: int | None = None
    #: This run's tolerance (scaled to the reference's magnitude, see `parity_tolerance`).
    tolerance: float = PARITY_ATOL


@dataclass
class VerifyReport:
    rows: list[ParityRow] = field(default_factory=list)
    constant_inputs_finite: bool = True

    @property
    def max_abs_diff(self) -> float:
        return max((r.max_abs_diff for r in self.rows), default=0.0)

    @property
    def tolerance(self) -> float:
        """The tolerance of the run that came closest to its own bound."""
        worst = max(self.rows, key=lambda r: r.max_abs_diff / r.tolerance, default=None)
        return worst.tolerance if worst else PARITY_ATOL

    @property
    def worst_ratio(self) -> float:
        """max over runs of difference / tolerance (≤ 1 passes)."""
        return max((r.max_abs_diff / r.tolerance for r in self.rows), default=0.0)

    def to_dict(self) -> dict:
        return {
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "tolerance_rule": f"{PARITY_ATOL:g} + {PARITY_RTOL:g} x max|PyTorch output| per run",
            "worst_ratio": self.worst_ratio,
            "constant_inputs_finite": self.constant_inputs_finite,
            "runs": [r.__dict__ for r in self.rows],
        }


def output_names(spec: DetectorSpec) -> list[str]:
    return ["logits"] if spec.task == "classify" else ["last_hidden_state", "pooled"]


def input_name(spec: DetectorSpec) -> str:
    return "video" if spec.modality == "video" else "image"


def dummy_input(spec: DetectorSpec, batch: int, frames: int | None = None, seed: int = 0, fill: int | None = None) -> torch.Tensor:
    shape = spec.input_shape(batch, frames)
    if fill is not None:
        return torch.full(shape, fill, dtype=torch.uint8)
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def _export_torchscript(detector: torch.nn.Module, spec: DetectorSpec, dummy: torch.Tensor, path: Path, opset: int) -> None:
    name = input_name(spec)
    axes = {name: {0: "batch", 1: "frames"} if spec.frames_axis_symbolic else {0: "batch"}}
    for out in output_names(spec):
        axes[out] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; verification below is the real check
        torch.onnx.export(detector, (dummy,), str(path), input_names=[name], output_names=output_names(spec),
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)


def _export_dynamo(detector: torch.nn.Module, spec: DetectorSpec, dummy: torch.Tensor, path: Path, opset: int) -> None:
    from torch.export import Dim

    dims = {0: Dim("batch", min=1, max=1024)}
    if spec.frames_axis_symbolic:
        dims[1] = Dim("frames", min=1, max=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(detector, (dummy,), input_names=[input_name(spec)], output_names=output_names(spec),
                                    dynamic_shapes=({**dims},), opset_version=opset, dynamo=True, verbose=False)
        program.save(str(path), external_data=False)


#: name → export function. Both write a single self-contained .onnx file.
EXPORTERS: dict[str, Callable[..., None]] = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


def export_onnx(detector: torch.nn.Module, spec: DetectorSpec, path: Path, opset: int = DEFAULT_OPSET,
                exporter: str = "torchscript") -> float:
    """Export `detector` to `path` with the spec in its metadata. Returns the export time in seconds."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"opset {opset} is outside {MIN_OPSET}–{MAX_OPSET}",
                          f"use --opset between {MIN_OPSET} and {MAX_OPSET} (onnxruntime 1.22 on validators refuses newer)")
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter '{exporter}'", f"choose one of: {', '.join(EXPORTERS)}")
    dummy = dummy_input(spec, EXPORT_DUMMY_BATCH, EXPORT_DUMMY_FRAMES if spec.frames_axis_symbolic else spec.frames)
    started = time.perf_counter()
    try:
        with torch.no_grad():
            EXPORTERS[exporter](detector.eval(), spec, dummy, path, opset)
    except ExportError:
        raise
    except Exception as exc:
        raise _export_failure(detector, dummy, exporter, exc) from exc
    seconds = time.perf_counter() - started
    model = onnx.load(str(path))
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written is None or not MIN_OPSET <= written <= MAX_OPSET:
        raise ExportError(f"the exporter wrote opset {written}, outside {MIN_OPSET}–{MAX_OPSET}",
                          "pass a lower --opset or try the other --exporter")
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {SPEC_METADATA_KEY: spec.to_json()})
    model.producer_name = "sn34-kit"
    onnx.save(model, str(path), save_as_external_data=False)
    for leftover in path.parent.glob(path.name + ".data"):
        leftover.unlink()
    return seconds


def _export_failure(detector: torch.nn.Module, dummy: torch.Tensor, exporter: str, exc: Exception) -> ExportError:
    """Blame the model when plain PyTorch fails on the same input (a size it cannot take), else the exporter."""
    try:
        with torch.no_grad():
            detector(dummy)
    except Exception as eager:
        return ExportError(f"the model fails in PyTorch on uint8 input {list(dummy.shape)}: {type(eager).__name__}: "
                           f"{first_line(eager)}",
                           "if it was made for another size, set --height/--width (and --frames) to it; otherwise fix "
                           "its forward (KIT_DEBUG=1 shows where it fails)")
    other = "dynamo" if exporter == "torchscript" else "torchscript"
    return ExportError(f"the {exporter} exporter failed: {type(exc).__name__}: {first_line(exc)}",
                       f"try --exporter {other}, or rerun with KIT_DEBUG=1 for the full trace")


#: The C++ source location onnxruntime puts before its message ("/onnxruntime_src/…/x.h:91 ns::Fn(args) ").
_ORT_SOURCE_PREFIX = re.compile(r"^\S+\.(?:h|cc|cpp):\d+ [^(]*\([^)]*\) ")


def ort_message(exc: Exception) -> str:
    """onnxruntime's status message without the C++ source location, cut at a word boundary."""
    message = str(exc).split("Status Message:")[-1].strip()
    return first_line(_ORT_SOURCE_PREFIX.sub("", message))


def check_input_contract(path: Path, spec: DetectorSpec) -> None:
    """Read the file's first input back and fail on anything the validator would trip over."""
    graph = onnx.load(str(path), load_external_data=False).graph
    first = graph.input[0]
    tensor = first.type.tensor_type
    problems: list[str] = []
    if tensor.elem_type != onnx.TensorProto.UINT8:
        problems.append(f"input dtype is {onnx.TensorProto.DataType.Name(tensor.elem_type)}, not UINT8")
    dims = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim]
    expected_rank = 4 if spec.modality == "image" else 5
    if len(dims) != expected_rank:
        problems.append(f"input rank is {len(dims)}, expected {expected_rank}")
    else:
        if isinstance(dims[0], int):
            problems.append(f"batch axis was specialised to {dims[0]}")
        if spec.frames_axis_symbolic and isinstance(dims[1], int):
            problems.append(f"frames axis was specialised to {dims[1]}")
        elif spec.modality == "video" and not spec.frames_axis_symbolic and dims[1] != spec.frames:
            problems.append(f"frames axis is {dims[1]}, expected the fixed {spec.frames}")
        if dims[-3:] != [3, spec.height, spec.width]:
            problems.append(f"channel/height/width are {dims[-3:]}, expected [3, {spec.height}, {spec.width}]")
    if problems:
        raise ExportError(f"exported input '{first.name}' {dims}: " + "; ".join(problems),
                          "the model's forward must not turn batch or frame counts into Python ints; try the other --exporter")


def verify_parity(detector: torch.nn.Module, path: Path, spec: DetectorSpec, threads: int | None = None,
                  on_run: Callable[[int, int], None] | None = None) -> VerifyReport:
    """Run the ONNX file and PyTorch side by side on fresh shapes; raise ParityError past the tolerance."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 4  # a failing run is reported once, by the kit, not also in onnxruntime's colours
    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed_name = session.get_inputs()[0].name
    report = VerifyReport()
    shapes = verification_shapes(spec)
    detector = detector.eval()
    for i, (batch, frames, fill) in enumerate(shapes):
        where = f"batch {batch}" + (f", frames {frames}" if frames else "") + (f", all-{fill} input" if fill is not None else "")
        x = dummy_input(spec, batch, frames, seed=100 + i, fill=fill)
        t0 = time.perf_counter()
        try:
            onnx_out = session.run(None, {feed_name: x.numpy()})
        except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
            raise ExportError(f"onnxruntime fails at {where}: {ort_message(exc)}",
                              "an axis is frozen inside the graph (a Python int from x.shape?); keep batch/frame counts as tensors") from exc
        t1 = time.perf_counter()
        with torch.no_grad():
            torch_out = detector(x)
        t2 = time.perf_counter()
        if not all(np.all(np.isfinite(o)) for o in onnx_out):
            report.constant_inputs_finite = fill is None
            raise ExportError(f"the model outputs NaN/inf at {where}",
                              "guard divisions and normalisation (std > 0, eps in norms); the validator scores NaN as the floor")
        torch_list = [t.numpy() for t in ([torch_out] if isinstance(torch_out, torch.Tensor) else list(torch_out))]
        tolerance = parity_tolerance(torch_list, spec.task)
        diff = 0.0
        for got, want in zip(onnx_out, torch_list):
            if got.shape != want.shape:
                raise ExportError(f"ONNX output shape {list(got.shape)} ≠ PyTorch {list(want.shape)} at {where}",
                                  "an axis is frozen inside the graph; check reshapes that use Python ints")
            if got.size:
                diff = max(diff, float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))))
        if spec.task == "classify" and onnx_out[0].shape != (batch, spec.num_classes):
            raise ExportError(f"output shape is {list(onnx_out[0].shape)}, expected [{batch}, {spec.num_classes}]",
                              "the model must return one row of class logits per sample")
        report.rows.append(ParityRow(batch, frames, diff, (t1 - t0) * 1e3, (t2 - t1) * 1e3, fill, tolerance))
        if on_run:
            on_run(i + 1, len(shapes))
        if not np.isfinite(diff) or diff > tolerance:
            raise ParityError(diff, tolerance, where)
    return report


def verification_shapes(spec: DetectorSpec) -> list[tuple[int, int | None, int | None]]:
    """(batch, frames, fill) runs: every verify batch and frame count on random pixels, the validator's own
    video shape, then constant all-0 and all-255 inputs (fill) that must stay finite and match too."""
    if spec.modality == "image":
        runs = [(b, None, None) for b in VERIFY_BATCHES]
    elif spec.frames_axis_symbolic:
        runs = [(VERIFY_BATCHES[i % len(VERIFY_BATCHES)], t, None) for i, t in enumerate(VERIFY_FRAMES)]
        runs.append((4, spec.frames, None))
    else:  # a fixed frame count: the validator sends exactly that many
        runs = [(b, spec.frames, None) for b in VERIFY_BATCHES] + [(4, spec.frames, None)]
    frames = spec.frames if spec.modality == "video" else None
    return runs + [(1, frames, 0), (1, frames, 255)]
