"""The model sessions `kit bench` runs, and what the evaluator reads from each model (contract §1, current-contract §2–§3).

`ModelSession` is what the run loop needs: `io` (modality, H×W, T), `settings` (for the
report) and `run(batch) -> float32 [B, K]`. The profile decides the era's rules and the
model's format decides the session, so any pair works:

* `OnnxSession` — onnxruntime. Only the first input and first output matter. H×W come
  from the input's last two dims when both are integers, else both default; T is dim 1
  of a rank-5 input when it is an integer, else the default, clamped to the maximum.
  Thread counts are set explicitly (the validator left them to onnxruntime).
* `BundleSession` / `WorkerBundleSession` — a safetensors bundle loaded by
  `validator_sim.bundle_runtime` as the evaluator loads it (CUDA when present): in this
  process under the kit's own Python, else in a worker under the evaluator's runtime or
  --python (`open_bundle_session` picks); H×W, T and frame_rate come from
  `model_config.yaml` with the evaluator's defaults. Both record the library versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from discriminator.errors import InputError, first_line
from validator_sim.profiles import Profile


@dataclass(frozen=True)
class ModelIO:
    """The model as the validator sees it."""

    modality: str
    height: int
    width: int
    #: Frames sent per clip (video only).
    frames: int | None
    input_name: str
    input_shape: list[Any]
    input_type: str
    output_shape: list[Any]
    warnings: tuple[str, ...] = field(default_factory=tuple)


def read_model_io(session: ort.InferenceSession, profile: Profile) -> ModelIO:
    """Target size, frame count and modality exactly as the validator derives them."""
    first_input = session.get_inputs()[0]
    shape = list(first_input.shape)
    warnings: list[str] = []
    if len(shape) == 4:
        modality, hw_dims = "image", shape[2:4]
        frames = None
    elif len(shape) == 5:
        modality, hw_dims = "video", shape[3:5]
        frames = shape[1] if isinstance(shape[1], int) else profile.default_frames
        if frames > profile.max_frames:
            warnings.append(f"the graph fixes T={frames}; the validator clamps T to {profile.max_frames}, so every batch will fail")
            frames = profile.max_frames
    else:
        raise InputError(f"the model's first input has rank {len(shape)} ({shape})",
                         "the validator feeds [B,3,H,W] images or [B,T,3,H,W] video")
    if all(isinstance(d, int) for d in hw_dims):
        height, width = int(hw_dims[0]), int(hw_dims[1])
    else:
        height = width = profile.default_size
        if any(isinstance(d, int) for d in hw_dims):
            warnings.append(f"only one of H, W is fixed ({hw_dims}); the validator then sends {height}×{width}")
    if first_input.type != "tensor(uint8)":
        warnings.append(f"the first input is {first_input.type}; the validator always feeds uint8, so every batch will fail")
    return ModelIO(
        modality=modality,
        height=height,
        width=width,
        frames=frames,
        input_name=first_input.name,
        input_shape=shape,
        input_type=first_input.type,
        output_shape=list(session.get_outputs()[0].shape),
        warnings=tuple(warnings),
    )


def create_session(onnx_bytes: bytes, threads: int, label: str = "MODEL") -> tuple[ort.InferenceSession, dict[str, Any]]:
    """A session configured as the validator's (CUDA first when present, ORT_ENABLE_ALL), plus its settings for the report."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle ORT threads would spin and starve the decoding threads that run beside them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 4  # a failing batch is reported once, by the bench, not also in ORT's colours
    ort.set_default_logger_severity(3)
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise InputError(f"onnxruntime {ort.__version__} cannot load the model: {first_line(exc) or type(exc).__name__}",
                         f"run `kit check {label}` to see which rule it breaks") from exc
    settings = {
        "onnxruntime": ort.__version__,
        "providers": session.get_providers(),
        "intra_op_num_threads": threads,
        "inter_op_num_threads": 1,
        "graph_optimization_level": "ORT_ENABLE_ALL",
    }
    return session, settings


def run_batch(session: ort.InferenceSession, input_name: str, batch: np.ndarray) -> np.ndarray:
    """Output 0 for one uint8 batch, as a [B, K] float32 array (each row flattened, as the validator does)."""
    output = np.asarray(session.run(None, {input_name: batch})[0])
    if output.ndim == 0 or output.shape[0] != batch.shape[0]:
        raise ValueError(f"output 0 has shape {list(output.shape)} for a batch of {batch.shape[0]}")
    return output.reshape(batch.shape[0], -1).astype(np.float32, copy=False)


class ModelSession(Protocol):
    """What the run loop needs from a model, whatever its format."""

    io: ModelIO
    settings: dict[str, Any]
    #: The frame rate the model asks the evaluator to sample clips at (bundles' `preprocessing.frame_rate`).
    frame_rate: float | None
    #: Whether the model may still be loading when the session is returned (`wait_ready` then blocks).
    loads_in_background: bool

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 [B, K] for one uint8 batch; raises on any failure."""
        ...

    def wait_ready(self) -> None:
        """Return once the model is loaded (a session may load in the background); raise KitError if it cannot be."""
        ...


class OnnxSession:
    """An ONNX model through onnxruntime, configured as the validator's."""

    frame_rate = None
    loads_in_background = False

    def __init__(self, onnx_bytes: bytes, profile: Profile, threads: int, label: str = "MODEL"):
        self.session, self.settings = create_session(onnx_bytes, threads, label)
        self.settings["runtime"] = f"onnxruntime {self.settings['onnxruntime']}"
        self.io = read_model_io(self.session, profile)

    def wait_ready(self) -> None:
        """Loaded on construction."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        return run_batch(self.session, self.io.input_name, batch)


def torch_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu" (the evaluator's choice)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def open_bundle_session(bundle_dir: Path, modality: str, profile: Profile, threads: int,
                        wait: bool = True, worker: Any = None, label: str | None = None) -> "ModelSession":
    """The session for a bundle under the runtime `validator_sim.runtime` picks: in this process when that is the
    kit's own Python (no copy of the batches), else in a worker process started under the evaluator's runtime or
    the --python interpreter, which is where its library versions live. `wait=False` lets a worker load in the
    background (see `WorkerBundleSession`); an in-process session is always loaded on return. `worker`: a
    `BundleWorker` already loading this bundle with these settings (`validator_sim.opening.start_early`), adopted.
    `label`: the model as the user named it (a zip's path rather than the folder it was unpacked into), for errors."""
    from validator_sim.runtime import current_runtime

    runtime = current_runtime()
    if runtime.kind == "kit":
        return BundleSession(bundle_dir, modality, profile, threads, label=label)
    return WorkerBundleSession(bundle_dir, modality, threads, wait=wait, worker=worker, label=label)


def load_failure(exc: Any, model: str) -> InputError:
    """The one line for a bundle that did not load (a `BundleError`), naming the model as the user gave it."""
    return InputError(f"the bundle cannot be loaded as the evaluator loads it ({exc.stage}): {exc.message}",
                      f"run `kit check {model}` for the full report")


def _runtime_settings(kind: str, label: str, reported: dict[str, Any]) -> dict[str, Any]:
    from validator_sim.runtime import version_drift

    versions = reported.get("versions") or {}
    return {"kind": kind, "label": label, "python": reported.get("python"), "executable": reported.get("executable"),
            "library_versions": versions, "drift_from_evaluator": version_drift(versions)}


class WorkerBundleSession:
    """A bundle loaded in a `BundleWorker` process under another Python (the evaluator's runtime or --python).

    With `wait=False` the worker loads in the background: `io` and `frame_rate` come from `model_config.yaml`
    read here with the evaluator's rules (the same function the worker runs), so the bench can decode its first
    batches meanwhile; `wait_ready()` (which `settings` and `run()` call first) collects the worker's answer and
    checks that it read the config the same way. A config this process cannot read is left to the worker, whose
    verdict is the evaluator's.
    """

    def __init__(self, bundle_dir: Path, modality: str, threads: int, wait: bool = True, worker: Any = None,
                 label: str | None = None):
        from validator_sim import bundle_runtime

        self.modality, self.threads, self.label = modality, threads, label or str(bundle_dir)
        self._settings: dict[str, Any] | None = None
        config = None
        if not wait:
            try:
                config = bundle_runtime.read_model_config(bundle_dir, modality).to_dict()
            except bundle_runtime.BundleError:
                wait = True
        try:
            if worker is None:
                worker = bundle_runtime.BundleWorker(bundle_dir, modality, device="auto", threads=threads,
                                                     load_timeout_s=600.0, wait=wait)
            elif wait:
                worker.wait_loaded()
            self.worker = worker
        except bundle_runtime.BundleError as exc:
            raise load_failure(exc, self.label) from exc
        self.loads_in_background = not wait
        self._set_io(config if config is not None else self.worker.info["config"])

    def _set_io(self, config: dict[str, Any]) -> None:
        frames = config["num_frames"] if self.modality == "video" else None
        shape: list[Any] = ["B", 3, config["height"], config["width"]] if frames is None else \
            ["B", frames, 3, config["height"], config["width"]]
        self.io = ModelIO(modality=self.modality, height=config["height"], width=config["width"], frames=frames,
                          input_name="(bundle forward)", input_shape=shape, input_type="tensor(uint8)",
                          output_shape=["B", config["num_classes"]], warnings=tuple(config["warnings"]))
        self.frame_rate = config["frame_rate"] if self.modality == "video" else None
        self.num_classes = config["num_classes"]

    def wait_ready(self) -> None:
        """Block until the worker has loaded the bundle; InputError if it could not."""
        if self._settings is not None:
            return
        from validator_sim.bundle_runtime import BundleError

        try:
            info = self.worker.wait_loaded()
        except BundleError as exc:
            raise load_failure(exc, self.label) from exc
        config = info["config"]
        read_here = (self.io.height, self.io.width, self.io.frames, self.frame_rate, self.num_classes)
        self._set_io(config)
        if (self.io.height, self.io.width, self.io.frames, self.frame_rate, self.num_classes) != read_here:
            raise InputError("model_config.yaml reads differently under the evaluator's runtime than under the kit's "
                             f"(H, W, T, frame rate, classes: {read_here} here, "
                             f"{(self.io.height, self.io.width, self.io.frames, self.frame_rate, self.num_classes)} there)",
                             f"write the values in model_config.yaml as plain ints and floats, then run `kit check {self.label}`")
        reported = info.get("runtime") or {}
        torch_version = (reported.get("versions") or {}).get("torch")
        self._settings = {
            "runtime": f"torch {torch_version} ({self.worker.runtime.label})",
            "providers": [info["device"]],
            "device": info["device"],
            "dtype": config["dtype"],
            "param_dtype": info["param_dtype"],
            "module_class": info["module_class"],
            "intra_op_num_threads": self.threads,
            "model_config": config,
            "bundle_runtime": _runtime_settings(self.worker.runtime.kind, self.worker.runtime.label, reported),
        }

    @property
    def settings(self) -> dict[str, Any]:
        self.wait_ready()
        assert self._settings is not None
        return self._settings

    def run(self, batch: np.ndarray) -> np.ndarray:
        from validator_sim.bundle_runtime import BundleError

        self.wait_ready()
        try:
            return self.worker.run(batch, timeout_s=600.0)
        except BundleError as exc:
            raise RuntimeError(f"{exc.stage}: {exc.message}") from exc

    def close(self) -> None:
        self.worker.close()


class BundleSession:
    """A safetensors bundle loaded in-process as the evaluator loads it (`bundle_runtime.load_bundle`)."""

    loads_in_background = False

    def __init__(self, bundle_dir: Path, modality: str, profile: Profile, threads: int, device: str | None = None,
                 label: str | None = None):
        import torch

        from validator_sim import bundle_runtime

        bundle_runtime.keep_freed_memory()  # torch's per-op buffers reuse pages instead of faulting them in anew
        torch.set_num_threads(threads)
        device = device or torch_device()
        try:
            self.loaded = bundle_runtime.load_bundle(bundle_dir, modality, device)
        except bundle_runtime.BundleError as exc:
            raise load_failure(exc, label or str(bundle_dir)) from exc
        config = self.loaded.config
        frames = config.num_frames if modality == "video" else None
        batch_dim = "B"
        shape: list[Any] = [batch_dim, 3, config.height, config.width] if frames is None else \
            [batch_dim, frames, 3, config.height, config.width]
        self.io = ModelIO(modality=modality, height=config.height, width=config.width, frames=frames,
                          input_name="(bundle forward)", input_shape=shape, input_type="tensor(uint8)",
                          output_shape=[batch_dim, config.num_classes], warnings=tuple(config.warnings))
        self.frame_rate = config.frame_rate if modality == "video" else None
        self.settings = {
            "runtime": f"torch {torch.__version__}",
            "providers": [device],
            "device": device,
            "dtype": config.dtype,
            "param_dtype": self.loaded.param_dtype,
            "module_class": self.loaded.module_class,
            "intra_op_num_threads": threads,
            "model_config": config.to_dict(),
            "bundle_runtime": _runtime_settings("kit", "the kit's own environment", bundle_runtime.library_versions()),
        }

    def wait_ready(self) -> None:
        """Loaded on construction."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        from validator_sim import bundle_runtime

        return bundle_runtime.run_batch(self.loaded, batch)
