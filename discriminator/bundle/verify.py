"""Prove a written bundle is the detector that was built, by loading it the way the evaluator does.

The bundle is loaded in a fresh `python -I` process whose import path holds nothing
of the kit (validator_sim.bundle_runtime.BundleWorker): `model.py` imported by file
location as `custom_model`, `load_model` bound, `.to(device, dtype).eval()`, uint8
batches under `no_grad`. Its logits are compared with the PyTorch wrapper's and,
when the ONNX twin was built too, with onnxruntime's, at the same batch sizes and
frame counts as the ONNX verification plus constant all-0 / all-255 inputs.

float32 bundles must match within the scaled logit tolerance of the ONNX check.
float16 / bfloat16 bundles are compared in what the evaluator scores —
probabilities — against the float32 PyTorch wrapper; their drift (max |Δp| over
classes, and in p(real)) must stay under a bound per dtype. Those bounds are about
precision, not about ties, so an untrained model's near-tied logits cannot make the
check flaky: probabilities move smoothly with the logits, argmax flips do not count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from discriminator.errors import ExportError, ParityError
from discriminator.export import dummy_input, parity_tolerance, verification_shapes
from discriminator.spec import DetectorSpec
from validator_sim.bundle_runtime import BundleError, BundleWorker

#: Max |Δp| allowed against the float32 wrapper, per stored dtype. fp16 keeps ~3 decimal digits through a
#: network, bf16 ~2; measured drifts on the examples are far below (docs/bundles.md has the figures).
PROBABILITY_DRIFT_LIMITS = {"float32": None, "float16": 0.02, "bfloat16": 0.05}
#: Seconds allowed for the worker to import torch and load the bundle, and for one verification run.
LOAD_TIMEOUT_S, RUN_TIMEOUT_S = 600.0, 600.0


@dataclass
class BundleParityRow:
    batch: int
    frames: int | None
    fill: int | None
    #: max |bundle − PyTorch| over logits, and over probabilities.
    logits_vs_torch: float
    probs_vs_torch: float
    p_real_vs_torch: float
    #: max |bundle − onnxruntime| over logits (None without an ONNX twin).
    logits_vs_onnx: float | None
    tolerance: float
    bundle_ms: float


@dataclass
class BundleVerifyReport:
    dtype: str
    param_dtype: str
    load_seconds: float
    rows: list[BundleParityRow] = field(default_factory=list)
    drift_limit: float | None = None
    #: The runtime the bundle was loaded under: kind (evaluator | python | kit), versions, drift from the pins.
    runtime: dict = field(default_factory=dict)

    def _max(self, name: str) -> float | None:
        values = [getattr(r, name) for r in self.rows if getattr(r, name) is not None]
        return max(values) if values else None

    @property
    def max_logits_vs_torch(self) -> float:
        return self._max("logits_vs_torch") or 0.0

    @property
    def max_probs_vs_torch(self) -> float:
        return self._max("probs_vs_torch") or 0.0

    @property
    def max_p_real_vs_torch(self) -> float:
        return self._max("p_real_vs_torch") or 0.0

    @property
    def max_logits_vs_onnx(self) -> float | None:
        return self._max("logits_vs_onnx")

    def to_dict(self) -> dict:
        return {
            "dtype": self.dtype, "param_dtype": self.param_dtype, "load_seconds": round(self.load_seconds, 3),
            "max_logits_vs_torch": self.max_logits_vs_torch, "max_probs_vs_torch": self.max_probs_vs_torch,
            "max_p_real_vs_torch": self.max_p_real_vs_torch, "max_logits_vs_onnx": self.max_logits_vs_onnx,
            "drift_limit": self.drift_limit, "runtime": self.runtime, "runs": [asdict(r) for r in self.rows],
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _onnx_session(onnx_path: Path | None, threads: int | None):
    if onnx_path is None:
        return None, None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 1
    options.log_severity_level = 4  # a failing run is reported once, by the kit
    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name


def verify_bundle(bundle_dir: Path, detector: torch.nn.Module, spec: DetectorSpec, dtype: str,
                  onnx_path: Path | None = None, threads: int | None = None,
                  on_run: Callable[[int, int], None] | None = None) -> BundleVerifyReport:
    """Load `bundle_dir` as the evaluator does and compare it run by run; raise on the first disagreement."""
    from discriminator.bundle.analyzer import analyze_file

    violations = analyze_file(bundle_dir / "model.py")
    if violations:
        first = violations[0]
        raise ExportError(f"the generated model.py fails static analysis at line {first.line}: {first.message}",
                          "report this with KIT_DEBUG=1 output: the template must always pass")
    try:
        worker = BundleWorker(bundle_dir, spec.modality, load_timeout_s=LOAD_TIMEOUT_S, threads=threads or 0)
    except BundleError as exc:
        from validator_sim.runtime import current_runtime

        raise ExportError(f"the bundle does not load as the evaluator loads it, under {current_runtime().label} "
                          f"({exc.stage}: {exc.message})", "rerun with KIT_DEBUG=1 for the bundle's traceback") from exc
    session, feed = _onnx_session(onnx_path, threads)
    limit = PROBABILITY_DRIFT_LIMITS[dtype]
    from validator_sim.runtime import version_drift

    reported = worker.info.get("runtime") or {}
    report = BundleVerifyReport(dtype=dtype, param_dtype=str(worker.info.get("param_dtype")),
                                load_seconds=worker.seconds_to_load, drift_limit=limit,
                                runtime={"kind": worker.runtime.kind, "python": reported.get("python"),
                                         "versions": reported.get("versions") or {},
                                         "drift": version_drift(reported.get("versions") or {})})
    shapes = verification_shapes(spec)
    detector = detector.eval()
    try:
        for i, (batch, frames, fill) in enumerate(shapes):
            where = f"batch {batch}" + (f", frames {frames}" if frames else "") + (f", all-{fill} input" if fill is not None else "")
            x = dummy_input(spec, batch, frames, seed=200 + i, fill=fill)
            started = time.perf_counter()
            try:
                got = worker.run(x.numpy(), timeout_s=RUN_TIMEOUT_S)
            except BundleError as exc:
                raise ExportError(f"the bundle fails at {where} ({exc.stage}: {exc.message})",
                                  "rerun with KIT_DEBUG=1; the ONNX twin may still be fine") from exc
            bundle_ms = (time.perf_counter() - started) * 1e3
            with torch.no_grad():
                want = detector(x).numpy()
            if got.shape != want.shape:
                raise ExportError(f"bundle output shape {list(got.shape)} ≠ PyTorch {list(want.shape)} at {where}",
                                  "report this with KIT_DEBUG=1 output")
            if not np.all(np.isfinite(got)):
                raise ExportError(f"the {dtype} bundle outputs NaN/inf at {where}",
                                  "use --dtype float32, or guard the overflow in the model" if dtype != "float32"
                                  else "guard divisions and normalisation (std > 0, eps in norms)")
            tolerance = parity_tolerance([want])
            logits_diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
            probs_got, probs_want = softmax(got), softmax(want)
            probs_diff = float(np.max(np.abs(probs_got - probs_want)))
            real_diff = float(np.max(np.abs(probs_got[:, 0] - probs_want[:, 0])))
            onnx_diff = None
            if session is not None:
                onnx_out = session.run(None, {feed: x.numpy()})[0]
                onnx_diff = float(np.max(np.abs(got.astype(np.float64) - onnx_out.astype(np.float64))))
            report.rows.append(BundleParityRow(batch, frames, fill, logits_diff, probs_diff, real_diff, onnx_diff,
                                               tolerance, bundle_ms))
            if on_run:
                on_run(i + 1, len(shapes))
            if limit is None:
                if logits_diff > tolerance:
                    raise ParityError(logits_diff, tolerance, where, compared="bundle and PyTorch")
                if onnx_diff is not None and onnx_diff > 2 * tolerance:
                    raise ParityError(onnx_diff, 2 * tolerance, where, compared="bundle and ONNX twin")
            elif probs_diff > limit:
                raise ParityError(probs_diff, limit, where, compared=f"{dtype} bundle and float32 PyTorch",
                                  quantity="probabilities")
    finally:
        worker.close()
    return report
