"""What the checker knows about one bundle: its files, its model_config.yaml, its model.py, and its runs.

`BundleContext` is the bundle's counterpart of the ONNX `CheckContext`: the behaviour
rules shared by both formats (finite, not-softmaxed, responsive, latency) only call
`run(batch, frames, probe)`, `probe_batch`, `validator_batch`, `spec` and `modality`.
Everything static (the YAML as written, the static analysis of model.py, the
`load_model` signature) is read here without running anything. The model itself runs
only in a `BundleWorker` (validator_sim/bundle_runtime.py): a fresh `python -I`
process with the kit's packages refused, loaded exactly as the evaluator loads it,
with a time limit on loading and on every batch, so a model.py that hangs, crashes or
prints megabytes costs a rule result, never the kit. Runs are cached per
(batch, frames, probe) as in the ONNX context; a failed run is a finding, not an exception.
A run that runs out of time is recorded in `timeouts` each time a rule reads it (the runner
says it as a time-out, see runner.py), and the worker, killed by the time limit, is started
again for the runs still to come.

No torch import here: torch runs in the worker only.
"""

from __future__ import annotations

import ast
import inspect
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from discriminator.artifact import BUNDLE_CONFIG, BUNDLE_MODEL, Artifact, bundle_weights_name
from discriminator.bundle.analyzer import Violation, analyze_source
from discriminator.check.context import PROBES, RunOutcome
from discriminator.errors import UsageError
from discriminator.spec import DetectorSpec
from validator_sim.bundle_runtime import BATCH_SIZES, RECORDED_LIBRARIES, BundleError, BundleWorker, is_network_failure

#: Seconds one batch may take before the bundle is called hung (`--time-limit`).
DEFAULT_TIME_LIMIT_S = 120.0
#: Seconds the worker may take to start, import model.py and run load_model (at least the batch limit):
#: torch's own import takes seconds on a busy machine, so loading gets more room than a batch.
LOAD_TIME_LIMIT_S = 300.0
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class BundleRunOptions:
    """How the checker runs a bundle: the per-batch time limit and the torch device (the evaluator uses CUDA when present)."""

    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise UsageError(f"--device {self.device!r} is not cpu, cuda or cuda:N", "pass --device cpu or --device cuda")
        if not self.time_limit_s > 0:
            raise UsageError(f"--time-limit {self.time_limit_s} must be a positive number of seconds", "e.g. --time-limit 120")


@dataclass
class BundleContext:
    """One bundle under check. Rules read from it; it runs the model (in a worker process) for them."""

    artifact: Artifact
    folder: Path  # the bundle on disk as the evaluator would load it (a temporary copy for a zip)
    threads: int
    requested_modality: str | None = None
    latency: str = "quick"
    options: BundleRunOptions = field(default_factory=BundleRunOptions)
    #: Every read of a run (or load) that ran out of time, in order; the runner turns them into time-out rows.
    timeouts: list[RunOutcome] = field(default_factory=list, repr=False)
    _runs: dict[tuple[int, int | None, str], RunOutcome] = field(default_factory=dict, repr=False)
    _worker: BundleWorker | None = field(default=None, repr=False)
    _info: dict[str, Any] | None = field(default=None, repr=False)
    _load_timeout: RunOutcome | None = field(default=None, repr=False)
    _load_error: BundleError | None = field(default=None, repr=False)
    _load_tried: bool = field(default=False, repr=False)
    _runtime_record: dict[str, Any] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ the files
    @property
    def names(self) -> list[str]:
        """Every file name in the bundle: the members and, for a folder, the other files beside them."""
        return sorted({*self.artifact.members, *self.artifact.extra_files})

    def member(self, name: str) -> bytes | None:
        return self.artifact.members.get(name)

    @cached_property
    def weights_name(self) -> str:
        config = self.member(BUNDLE_CONFIG)
        return bundle_weights_name(config) if config is not None else "model.safetensors"

    # ------------------------------------------------------------------ model_config.yaml as written
    @cached_property
    def raw_config(self) -> tuple[dict | None, str | None]:
        """(the parsed YAML mapping, None) or (None, why it cannot be read)."""
        import yaml

        data = self.member(BUNDLE_CONFIG)
        if data is None:
            return None, f"no {BUNDLE_CONFIG}"
        try:
            raw = yaml.safe_load(data.decode("utf-8"))
        except UnicodeDecodeError:
            return None, f"{BUNDLE_CONFIG} is not UTF-8 text"
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            return None, f"{BUNDLE_CONFIG} is not valid YAML{where} ({problem})"
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            return None, f"{BUNDLE_CONFIG} holds a {type(raw).__name__}, not a mapping of keys"
        for section in ("preprocessing", "model"):
            if raw.get(section) is not None and not isinstance(raw[section], dict):
                return None, f"`{section}:` holds a {type(raw[section]).__name__}, not a mapping of keys"
        return raw, None

    def section(self, name: str) -> dict[str, Any]:
        raw, _ = self.raw_config
        return (raw or {}).get(name) or {}

    # ------------------------------------------------------------------ what it is
    @property
    def spec(self) -> DetectorSpec | None:
        return self.artifact.spec

    @cached_property
    def modality(self) -> str | None:
        return bundle_modality(self.artifact, self.requested_modality)

    def require_modality(self) -> str:
        if self.modality is None:
            raise UsageError(f"cannot tell whether {self.artifact.source} is an image or a video bundle "
                             f"({BUNDLE_CONFIG} sets no `modality` and no num_frames)", "pass --modality image or --modality video")
        return self.modality

    @property
    def model_source(self) -> str:
        return (self.member(BUNDLE_MODEL) or b"").decode("utf-8", errors="replace")

    @cached_property
    def model_tree(self) -> ast.Module | None:
        if self.member(BUNDLE_MODEL) is None:
            return None
        try:
            return ast.parse(self.model_source)
        except SyntaxError:
            return None

    @cached_property
    def violations(self) -> list[Violation]:
        return bundle_violations(self.artifact)

    def load_model_signature(self) -> inspect.Signature | None:
        """`load_model`'s signature as written at model.py's top level (None when there is no plain `def load_model`)."""
        tree = self.model_tree
        if tree is None:
            return None
        defs = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name == "load_model"]
        return _signature_from_ast(defs[-1].args) if defs else None

    # ------------------------------------------------------------------ what the evaluator feeds
    @property
    def validator_batch(self) -> int:
        return BATCH_SIZES.get(self.modality or "image", 32)

    @property
    def probe_batch(self) -> int:
        return 1

    @property
    def probe_frames(self) -> int | None:
        return self.loaded_info["config"]["num_frames"] if self.modality == "video" and self.loaded_info else None

    def dim(self, axis_name: str) -> None:
        """A bundle declares no graph axes: every size comes from model_config.yaml (the latency rule asks for the batch)."""
        return None

    def feed_shape(self, batch: int, frames: int | None = None) -> tuple[int, ...]:
        config = self.loaded_info["config"]
        height, width = config["height"], config["width"]
        if self.modality == "video":
            return (batch, frames if frames is not None else config["num_frames"], 3, height, width)
        return (batch, 3, height, width)

    # ------------------------------------------------------------------ the worker
    def load(self) -> tuple[BundleWorker | None, BundleError | None]:
        """Start the worker once (model.py imported as custom_model, load_model called, .to(device, dtype).eval())."""
        if not self._load_tried:
            self._load_tried = True
            try:
                self._worker = BundleWorker(self.folder, self.require_modality(), device=self.options.device,
                                            load_timeout_s=self.load_limit_s, threads=self.threads)
                self._info = self._info or self._worker.info
            except BundleError as exc:
                self._load_error = exc
                if exc.stage == "timeout":
                    self._load_timeout = RunOutcome((), None, f"loading did not finish within {self.load_limit_s:g} s "
                                                    f"on this {self.device_name}", 0.0, stage="timeout")
        if self._load_timeout is not None:
            self.timeouts.append(self._load_timeout)
        return self._worker, self._load_error

    def runtime_record(self) -> dict[str, Any]:
        """Which runtime the bundle ran under and the versions it held: what the worker reported when it was
        started, else what its interpreter reports without running model.py (when static rules stopped the load)."""
        from validator_sim.runtime import current_runtime, probe_python, version_drift

        if self._runtime_record is None:
            worker, error = (self._worker, self._load_error) if self._load_tried else (None, None)
            runtime = worker.runtime if worker is not None else current_runtime()
            reported = (worker.info.get("runtime") if worker is not None else None) or (error.runtime if error else None)
            if reported is None:
                probed = probe_python(runtime.python)
                reported = {"python": probed["python"], "executable": probed["executable"],
                            "versions": {name: probed["versions"].get(name) for name in RECORDED_LIBRARIES}}
            self._runtime_record = {"kind": runtime.kind, "label": runtime.label, "python": runtime.python,
                                    **reported, "drift": version_drift(reported.get("versions") or {})}
        return self._runtime_record

    @property
    def load_limit_s(self) -> float:
        return max(LOAD_TIME_LIMIT_S, self.options.time_limit_s)

    @property
    def device_name(self) -> str:
        return "CPU" if self.options.device == "cpu" else f"GPU ({self.options.device})"

    @property
    def timeout_fix(self) -> str:
        """The fix for a run that ran out of time: more time, or a faster device."""
        more_time = f"raise --time-limit (now {self.options.time_limit_s:g} s per batch; loading gets max(300, it))"
        return more_time + (", or run it on a GPU with --device cuda" if self.options.device == "cpu" else "")

    @property
    def loaded_info(self) -> dict[str, Any] | None:
        """What the worker reported when the bundle first loaded (None when it never loaded)."""
        self.load()
        return self._info

    @property
    def seconds_to_load(self) -> float:
        worker, _ = self.load()
        return worker.seconds_to_load if worker is not None else 0.0

    def run(self, batch: int, frames: int | None = None, probe: str = "random") -> RunOutcome:
        """Run the bundle as the evaluator does (uint8, no_grad, output parsed); cached per (batch, frames, probe)."""
        key = (batch, frames, probe)
        if key not in self._runs:
            self._runs[key] = self._run_uncached(batch, frames, probe)
        outcome = self._runs[key]
        if outcome.stage == "timeout":
            self.timeouts.append(outcome)
        return outcome

    def _run_uncached(self, batch: int, frames: int | None, probe: str) -> RunOutcome:
        worker, error = self.load()
        if worker is None:
            return self._load_timeout or RunOutcome((batch,), None, f"the bundle did not load: {error.message}", 0.0,
                                                    stage=error.stage)
        shape = self.feed_shape(batch, frames)
        started = time.perf_counter()
        try:
            output = worker.run(PROBES[probe](shape), timeout_s=self.options.time_limit_s)
        except BundleError as exc:
            if exc.stage == "timeout":  # the worker was killed: the next run starts a fresh one
                self._worker, self._load_tried = None, False
                return RunOutcome(shape, None, f"a batch {_shape_text(shape)} did not finish within "
                                  f"{self.options.time_limit_s:g} s on this {self.device_name}",
                                  time.perf_counter() - started, stage="timeout")
            return RunOutcome(shape, None, exc.message + _last_line(exc.detail, exc.message),
                              time.perf_counter() - started, stage=exc.stage)
        return RunOutcome(shape, output, None, worker.last_seconds)

    def time_runs(self, batch: int, repeats: int) -> list[float]:
        """Seconds per forward at `batch` inside the worker (after one untimed run), `repeats` times."""
        if not self.run(batch).ok:
            return []
        worker, _ = self.load()
        times = []
        for _ in range(repeats):
            outcome = self._run_uncached(batch, None, "random")
            if not outcome.ok:
                break
            times.append(worker.last_seconds)
        return times

    def close(self) -> None:
        """Stop the worker (killed: a checked model has nothing to flush, and torch's orderly exit takes a second)."""
        if self._worker is not None:
            self._worker.close(kill=True)
            self._worker = None


def bundle_violations(artifact: Artifact) -> list[Violation]:
    """What the network's static check of model.py rejects (`discriminator.bundle.analyzer`), with the bundle's own
    sibling modules known as such."""
    source = artifact.members.get(BUNDLE_MODEL) or b""
    names = {*artifact.members, *artifact.extra_files}
    siblings = {name[:-3] for name in names if name.endswith(".py") and name != BUNDLE_MODEL}
    if artifact.location is not None:
        siblings |= {p.name for p in artifact.location.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    return analyze_source(source.decode("utf-8", errors="replace"), BUNDLE_MODEL, sibling_modules=siblings)


def bundle_refusals(artifact: Artifact) -> list[str]:
    """The bundle row's `refusals`: each static-check violation as one line, "model.py:12 imports os (…) — fix"."""
    return [f"{v.where} {v.message} — {v.fix}" for v in bundle_violations(artifact)]


def bundle_modality(artifact: Artifact, requested: str | None = None) -> str | None:
    """--modality, else the kit spec's, else a kit-written model.py's MODALITY, else model_config.yaml's `modality`,
    else video when it sets num_frames."""
    import yaml

    if requested:
        return requested
    if artifact.spec is not None:
        return artifact.spec.modality
    declared = _model_py_modality(artifact.members.get("model.py") or b"")
    if declared:
        return declared
    try:
        raw = yaml.safe_load((artifact.members.get(BUNDLE_CONFIG) or b"").decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    if raw.get("modality") in ("image", "video"):
        return raw["modality"]
    preprocessing = raw.get("preprocessing")
    if isinstance(preprocessing, dict) and ("num_frames" in preprocessing or "max_frames" in preprocessing):
        return "video"
    return None


def _model_py_modality(source: bytes) -> str | None:
    """`MODALITY = "image"|"video"` at the top level of a model.py (the kit's template writes it), read without running it."""
    import ast

    try:
        tree = ast.parse(source.decode("utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "MODALITY" and isinstance(node.value, ast.Constant)
                and node.value.value in ("image", "video")):
            return node.value.value
    return None


def describe_load_error(error: BundleError, runtime_kind: str = "evaluator") -> str:
    """One line for a failed load: the stage, what went wrong, the traceback's last line when it adds something,
    and what it means on the network when the cause is one the network meets differently or the same way.
    (A load that ran out of time is said by the runner, from `BundleContext.timeouts`.)"""
    from validator_sim.runtime import EVALUATOR_PINS

    text = f"{error.stage}: {error.message}" + _last_line(error.detail, error.message)
    if is_network_failure(f"{error.message}\n{error.detail}"):
        return (f"{text} — load_model reached for the network, and the evaluator has none: ship the weights in the "
                "weights file (safetensors) and build the model from code or a config literal, never from a hub id or URL")
    missing = re.search(r"No module named '([\w.]+)'", f"{error.message}\n{error.detail}")
    if missing and runtime_kind == "kit":
        package = missing.group(1).split(".")[0]
        dist = {"open_clip": "open-clip-torch"}.get(package, package)
        if dist in EVALUATOR_PINS:
            return (f"{text} — {dist} is on the evaluator's allowlist and installed there ({dist} "
                    f"{EVALUATOR_PINS[dist]}), not in the kit's own environment: `kit runtime install` makes the "
                    "evaluator's runtime, and every check then runs in it")
    return text


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _last_line(detail: str, message: str) -> str:
    """The last line of a traceback or log tail, in brackets, unless the message already says it."""
    lines = [line.strip() for line in (detail or "").splitlines() if line.strip() and not line.startswith("---")]
    if not lines or lines[-1].startswith(("File ", "Traceback")):
        return ""
    last = lines[-1][:160]
    return "" if last in message or message.endswith(last.split(": ", 1)[-1]) else f" [{last}]"


def _signature_from_ast(args: ast.arguments) -> inspect.Signature:
    """An inspect.Signature with the written parameter names and kinds (defaults stand in as None)."""
    parameter = inspect.Parameter
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    params = [parameter(arg.arg, parameter.POSITIONAL_ONLY if index < len(args.posonlyargs) else parameter.POSITIONAL_OR_KEYWORD,
                        default=parameter.empty if index < first_default else None)
              for index, arg in enumerate(positional)]
    if args.vararg is not None:
        params.append(parameter(args.vararg.arg, parameter.VAR_POSITIONAL))
    params += [parameter(arg.arg, parameter.KEYWORD_ONLY, default=parameter.empty if default is None else None)
               for arg, default in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg is not None:
        params.append(parameter(args.kwarg.arg, parameter.VAR_KEYWORD))
    return inspect.Signature(params)
