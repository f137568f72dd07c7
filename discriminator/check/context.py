"""What the checker knows about one model: its graph, its first input and output, and its runs.

`CheckContext` parses the ONNX bytes once, reads the first input's shape the way
the validator does (contract §1), opens one onnxruntime session with the
validator's optimisation level and a fixed thread count, and runs the model on
demand, caching each (batch, frames, probe) run so rules can share them. A failed
run is recorded as an error string, never raised: a broken model is a finding.

Only onnx, onnxruntime and numpy are imported here; no torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from discriminator.artifact import Artifact
from discriminator.errors import InputError
from discriminator.spec import VALIDATOR_DEFAULT_FRAMES, DetectorSpec, spec_from_onnx_metadata

#: What the validator feeds when either H or W is symbolic (contract §1).
VALIDATOR_DEFAULT_SIZE = 224
#: Batch sizes the validator uses (contract §1); the last batch of a dataset may be shorter.
VALIDATOR_BATCH = {"image": 32, "video": 4}
#: Input rank per modality: [B,3,H,W] and [B,T,3,H,W].
RANK_OF_MODALITY = {"image": 4, "video": 5}
#: Position of the channel, height and width axes per modality.
AXES_OF_MODALITY = {"image": {"channels": 1, "height": 2, "width": 3},
                    "video": {"channels": 2, "height": 3, "width": 4}}


def _probe_random(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


#: The inputs every model is run on: name → how to make a uint8 batch of a given shape.
PROBES = {
    "random": lambda shape: _probe_random(shape, 0),
    "random-2": lambda shape: _probe_random(shape, 1),
    "all-0": lambda shape: np.zeros(shape, dtype=np.uint8),
    "all-255": lambda shape: np.full(shape, 255, dtype=np.uint8),
    "mid-grey": lambda shape: np.full(shape, 128, dtype=np.uint8),
}


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as declared: name, ONNX element type and dims."""

    name: str
    elem_type: int
    dims: tuple[int | str | None, ...] | None  # None: the graph declares no shape at all

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)

    @property
    def type_name(self) -> str:
        import onnx

        return onnx.TensorProto.DataType.Name(self.elem_type).lower() if self.elem_type else "undefined"


@dataclass
class RunOutcome:
    """One session.run: the first output, or the error that stopped it, and how long it took."""

    feed_shape: tuple[int, ...]
    output: np.ndarray | None
    error: str | None
    seconds: float
    #: For bundles, the evaluator's stage that failed: "forward", "output", "timeout", "crash", …
    stage: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class CheckContext:
    """One model under check. Rules read from it; it runs the model for them."""

    artifact: Artifact
    ort_min: tuple[int, int]
    threads: int
    requested_modality: str | None = None
    #: How the latency figure is measured: "off", "quick" (the batch proof's run) or "full" (rules.LATENCY_MODES).
    latency: str = "quick"
    #: Reads of runs that ran out of time, for the runner's time-out rows: none here (onnxruntime runs in-process).
    timeouts: tuple[RunOutcome, ...] = ()
    _runs: dict[tuple[int, int | None, str], RunOutcome] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ the graph
    @cached_property
    def model(self):  # onnx.ModelProto
        import onnx
        from google.protobuf.message import DecodeError

        try:
            model = onnx.load_model_from_string(self.artifact.onnx_bytes)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{self.artifact.source} is not a readable ONNX model ({type(exc).__name__})",
                             "check the file is complete, or rebuild it with `kit build`") from exc
        if not model.graph.node and not model.graph.input and not model.graph.output:
            raise InputError(f"{self.artifact.source} holds no ONNX graph",
                             "point at the exported .onnx file, or rebuild it with `kit build`")
        return model

    @cached_property
    def initializer_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.model.graph.initializer)

    @cached_property
    def inputs(self) -> list[TensorInfo]:
        """Inputs the caller must feed (initializer-backed inputs have defaults and are left out)."""
        return [_tensor_info(v) for v in self.model.graph.input if v.name not in self.initializer_names]

    @cached_property
    def outputs(self) -> list[TensorInfo]:
        return [_tensor_info(v) for v in self.model.graph.output]

    @property
    def first_input(self) -> TensorInfo | None:
        return self.inputs[0] if self.inputs else None

    @cached_property
    def metadata_spec(self) -> DetectorSpec | None:
        return spec_from_onnx_metadata({p.key: p.value for p in self.model.metadata_props})

    @property
    def spec(self) -> DetectorSpec | None:
        return self.artifact.spec

    @cached_property
    def modality(self) -> str | None:
        """--modality if given, else the kit spec's, else inferred from the input rank (4 image, 5 video)."""
        if self.requested_modality:
            return self.requested_modality
        if self.spec is not None:
            return self.spec.modality
        rank = self.first_input.rank if self.first_input else None
        return {4: "image", 5: "video"}.get(rank)

    def dim(self, axis_name: str) -> int | str | None:
        """The first input's declared dim for 'batch', 'frames', 'channels', 'height' or 'width'."""
        first = self.first_input
        if first is None or first.dims is None or self.modality is None:
            return None
        if axis_name == "batch":
            index = 0
        elif axis_name == "frames":
            if self.modality != "video":
                return None
            index = 1
        else:
            index = AXES_OF_MODALITY[self.modality][axis_name]
        return first.dims[index] if index < len(first.dims) else None

    # ------------------------------------------------------------------ what the validator feeds
    @property
    def validator_size(self) -> tuple[int, int]:
        """H×W the validator feeds: the graph's integers, else 224×224 when either is symbolic."""
        height, width = self.dim("height"), self.dim("width")
        if isinstance(height, int) and isinstance(width, int):
            return height, width
        return VALIDATOR_DEFAULT_SIZE, VALIDATOR_DEFAULT_SIZE

    @property
    def probe_frames(self) -> int | None:
        """T used for runs: the graph's fixed T (even above 64, to examine the rest), else 16."""
        if self.modality != "video":
            return None
        frames = self.dim("frames")
        return frames if isinstance(frames, int) else VALIDATOR_DEFAULT_FRAMES

    @property
    def probe_batch(self) -> int:
        """Batch used for single-sample probes: 1, or the graph's fixed batch."""
        batch = self.dim("batch")
        return batch if isinstance(batch, int) else 1

    @property
    def validator_batch(self) -> int:
        return VALIDATOR_BATCH.get(self.modality or "image", 32)

    def feed_shape(self, batch: int, frames: int | None = None) -> tuple[int, ...]:
        height, width = self.validator_size
        if self.modality == "video":
            return (batch, frames if frames is not None else self.probe_frames, 3, height, width)
        return (batch, 3, height, width)

    # ------------------------------------------------------------------ the session
    @cached_property
    def session_or_error(self):  # tuple[onnxruntime.InferenceSession | None, str | None]
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # run errors are findings, reported once by the rules
        ort.set_default_logger_severity(3)
        # From disk when there is a file, so external data beside it resolves (that rule reports it).
        source = str(self.artifact.onnx_path) if self.artifact.onnx_path is not None else self.artifact.onnx_bytes
        try:
            return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"]), None
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument/… types
            return None, short_error(exc)

    def run(self, batch: int, frames: int | None = None, probe: str = "random") -> RunOutcome:
        """Run the model as the validator does (first input only, uint8); cached per (batch, frames, probe)."""
        frames = frames if frames is not None else self.probe_frames
        key = (batch, frames, probe)
        if key not in self._runs:
            self._runs[key] = self._run_uncached(self.feed_shape(batch, frames), probe)
        return self._runs[key]

    def _run_uncached(self, shape: tuple[int, ...], probe: str) -> RunOutcome:
        session, error = self.session_or_error
        if session is None:
            return RunOutcome(shape, None, f"the model did not load: {error}", 0.0)
        feed = {session.get_inputs()[0].name: PROBES[probe](shape)}
        output_name = session.get_outputs()[0].name
        start = time.perf_counter()
        try:
            output = session.run([output_name], feed)[0]
        except Exception as exc:  # any runtime failure is a finding about the model
            return RunOutcome(shape, None, short_error(exc), time.perf_counter() - start)
        seconds = time.perf_counter() - start
        if not isinstance(output, np.ndarray) or output.dtype.kind not in "fiub":
            return RunOutcome(shape, None, f"the first output is not a numeric tensor ({type(output).__name__})", seconds)
        return RunOutcome(shape, output, None, seconds)

    def time_runs(self, batch: int, repeats: int) -> list[float]:
        """Seconds per session.run at `batch` (after one untimed run), `repeats` times."""
        first = self.run(batch)
        if not first.ok:
            return []
        return [self._run_uncached(self.feed_shape(batch), "random").seconds for _ in range(repeats)]


def default_threads() -> int:
    """The CPU cores this process may use (what the timing figure states)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def short_error(exc: BaseException, limit: int = 160) -> str:
    """The first informative line of an exception, trimmed (onnxruntime messages run long)."""
    text = str(exc).strip() or type(exc).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else text
    for marker in ("[ONNXRuntimeError] :",):
        if marker in line:
            line = line.split(marker, 1)[1].strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tensor_info(value_info) -> TensorInfo:
    tensor_type = value_info.type.tensor_type
    dims: tuple[int | str | None, ...] | None = None
    if tensor_type.HasField("shape"):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor_type.shape.dim
        )
    return TensorInfo(value_info.name, tensor_type.elem_type, dims)
