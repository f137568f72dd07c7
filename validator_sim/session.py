"""The onnxruntime session and what the validator reads from the graph (contract §1).

Only the first input and first output matter. H×W come from the input's last two
dims when both are integers, else both default; T is dim 1 of a rank-5 input when
it is an integer, else the default, and is clamped to the maximum. Thread counts are
set explicitly (the validator left them to onnxruntime) and recorded in every report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from discriminator.errors import InputError
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


def default_threads() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def create_session(onnx_bytes: bytes, threads: int) -> tuple[ort.InferenceSession, dict[str, Any]]:
    """A session configured as the validator's (CUDA first when present, ORT_ENABLE_ALL), plus its settings for the report."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle ORT threads would spin and starve the decoding threads that run beside them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"onnxruntime {ort.__version__} cannot load the model: {first_line[:300]}",
                         "run `kit check MODEL` to see which rule it breaks") from exc
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
