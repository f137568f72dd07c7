"""Load and run a safetensors bundle the way today's SN34 evaluator does (current-contract §2–§3).

A bundle is a folder holding `model_config.yaml`, `model.py` and the weights file.
The evaluator reads the YAML with its own defaults, imports `model.py` by file
location as the module `custom_model`, binds `load_model(weights_path, **kwargs)`
(falling back to `num_classes` alone when the full keywords do not bind), moves the
module with `.to(device, dtype).eval()` and feeds it raw uint8 batches under
`torch.no_grad()`. Its output is parsed from a tensor, `.logits`, a dict or a
1-tuple into float32 `[B, K]`.

Two ways to use it:

* in-process — `load_bundle()` + `run_batch()`: what `kit bench` uses;
* in a fresh interpreter — `BundleWorker`: this same file run as a script with
  `python -I` under the runtime `validator_sim.runtime` picks (the evaluator's pinned
  versions when `kit runtime install` made them), so nothing of the kit is on the
  import path (imports of the kit's packages are refused outright, as they would
  fail on the network) and no internet socket opens (the evaluator has no network).
  A `model.py` that hangs, crashes or prints megabytes costs a timeout or an error,
  never the caller. Every reply carries the library versions it ran under.

This file imports only the standard library, numpy, and (when a bundle is loaded)
torch and yaml, so that it can run in a Python without the kit.
"""

from __future__ import annotations

import collections
import importlib.util
import inspect
import json
import math
import os
import re
import select
import struct
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_FILE = "model_config.yaml"
MODEL_FILE = "model.py"
DEFAULT_WEIGHTS_FILE = "model.safetensors"
#: The module name the evaluator imports `model.py` as.
MODULE_NAME = "custom_model"
#: Spellings the evaluator accepts for `dtype`, and what each means.
DTYPE_ALIASES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
                 "bfloat16": "bfloat16", "bf16": "bfloat16"}
DEFAULT_RESIZE = (224, 224)
DEFAULT_FRAMES = 16
MAX_FRAMES = 64
#: `model.num_classes` when the YAML does not say (the evaluator's library default).
DEFAULT_NUM_CLASSES = 2
#: Last output dimensions the evaluator accepts besides `num_classes`.
ACCEPTED_LAST_DIMS = (1, 2, 3, 4)
#: The evaluator's batch sizes.
BATCH_SIZES = {"image": 32, "video": 4}
#: Top-level packages of the kit: a bundle must never need them, so the worker refuses them.
KIT_PACKAGES = ("discriminator", "validator_sim", "onnx_examples")
LOG_TAIL_BYTES = 64 * 1024
#: Libraries whose versions every bundle run records (validator_sim/runtime.py pins the same names).
RECORDED_LIBRARIES = ("torch", "torchvision", "torchaudio", "transformers", "timm", "safetensors", "einops",
                      "open-clip-torch", "numpy")
#: What a model that reaches for the network meets in the worker, as it would meet no route on the network.
NO_NETWORK_MARKER = "network access refused: the evaluator's sandbox has no network"
_NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                   "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg")
_LOCAL_HOSTS = (None, "", "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1")


def is_network_failure(text: str) -> bool:
    """Whether a load failure's message or traceback shows a model reaching for the network."""
    return bool(_NETWORK_FAILURE.search(text))


#: The worker's own refusal, and what Hugging Face, torch.hub and urllib say when a host cannot be reached.
_NETWORK_FAILURE = re.compile("|".join(re.escape(s) for s in (
    NO_NETWORK_MARKER, "couldn't connect to", "offline mode is enabled", "OfflineModeIsEnabled",
    "LocalEntryNotFoundError", "Temporary failure in name resolution", "Name or service not known",
    "urlopen error", "Max retries exceeded with url", "ConnectError", "HF_HUB_OFFLINE",
)), re.IGNORECASE)


def refuse_network() -> None:
    """Make every internet socket of this process fail with `NO_NETWORK_MARKER` (an audit hook: it cannot be undone).

    The evaluator loads bundles in a sandbox without network, so a `load_model` that downloads (a hub id in
    `from_pretrained`, `torch.hub`, a URL) fails there; here it fails the same way, whatever library it goes
    through, and not only for Hugging Face (whose HF_HUB_OFFLINE covers that library alone).
    """
    import socket

    def hook(event: str, args: tuple) -> None:
        if event not in _NETWORK_EVENTS:
            return
        if event == "socket.connect":
            family = getattr(args[0], "family", None)
            if family not in (socket.AF_INET, socket.AF_INET6):
                return
            host = args[1][0] if isinstance(args[1], tuple) and args[1] else None
        else:
            host = args[0] if args else None
        if host in _LOCAL_HOSTS:
            return
        raise ConnectionRefusedError(f"{NO_NETWORK_MARKER} (tried {event} {host!r})")

    sys.addaudithook(hook)


def library_versions() -> dict[str, Any]:
    """The versions this interpreter holds of `RECORDED_LIBRARIES`, read from package metadata (nothing imported)."""
    import importlib.metadata as metadata
    import platform

    versions: dict[str, str | None] = {}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "executable": sys.executable, "versions": versions}


def _torchvision_notes() -> list[str]:
    """What `sn34_torchvision` (installed beside the kit by `make setup`) had to do for torchvision, if it is here."""
    module = sys.modules.get("sn34_torchvision")
    note = getattr(module, "note", None) if module is not None else None
    return [note] if note else []


#: Set to 0 to leave glibc's allocator as it is (see `keep_freed_memory`).
KEEP_FREED_MEMORY_ENV = "KIT_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_kept_freed_memory: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse; True when it now does.

    Torch's CPU allocator takes every tensor straight from malloc, and glibc serves any
    block over its mmap threshold (at most 32 MiB) with a fresh mmap that it unmaps on
    free. A video model's activations are hundreds of MiB per batch, so every op of every
    batch faults its pages in anew — about 23,000 minor faults per 16-frame clip at
    224×224 on the example video detector, which doubled its forward time on the team's
    machine. With mmap off (`M_MMAP_MAX` 0) and the heap never trimmed, the second batch
    reuses the first one's pages. Numbers are unchanged (only where the buffers live
    changes); the process keeps its peak heap until it exits, which a bench, check or
    training process does soon. A no-op off glibc or with `KIT_KEEP_FREED_MEMORY=0`.
    """
    global _kept_freed_memory
    if _kept_freed_memory is not None:
        return _kept_freed_memory
    _kept_freed_memory = False
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1").strip() in ("0", "false", "no", "off"):
        return False
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept_freed_memory = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _kept_freed_memory


class BundleError(Exception):
    """A bundle failed at one stage of loading or running; `detail` holds the traceback or log tail.

    `runtime` is what the worker reported of its interpreter (versions), when the failure came from one.
    """

    def __init__(self, stage: str, message: str, detail: str = "", runtime: dict[str, Any] | None = None):
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message
        self.detail = detail
        self.runtime = runtime


@dataclass(frozen=True)
class BundleConfig:
    """`model_config.yaml` as the evaluator reads it, defaults applied."""

    dtype: str
    height: int
    width: int
    num_frames: int | None
    frame_rate: float | None
    num_classes: int
    weights_file: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_model_config(raw: Any, modality: str) -> BundleConfig:
    """Apply the evaluator's rules to the parsed YAML; raise BundleError(stage="config") where its load fails."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BundleError("config", f"{CONFIG_FILE} must hold a mapping, not a {type(raw).__name__}")
    warnings: list[str] = []
    dtype_raw = raw.get("dtype", "float32")
    dtype = DTYPE_ALIASES.get(str(dtype_raw).lower()) if isinstance(dtype_raw, str) else None
    if dtype is None:
        raise BundleError("config", f"dtype {dtype_raw!r} is not one of {', '.join(DTYPE_ALIASES)}")
    pre = raw.get("preprocessing") or {}
    if not isinstance(pre, dict):
        raise BundleError("config", "preprocessing must be a mapping")
    frames: int | None = None
    if "resize" in pre:
        resize = pre["resize"]
        if not (isinstance(resize, (list, tuple)) and len(resize) == 2 and all(_is_int(v) and v > 0 for v in resize)):
            raise BundleError("config", f"preprocessing.resize must be two positive ints [H, W], got {resize!r}")
        height, width = int(resize[0]), int(resize[1])
        if modality == "video":
            key = "num_frames" if "num_frames" in pre else ("max_frames" if "max_frames" in pre else None)
            frames = pre[key] if key else DEFAULT_FRAMES
            if not _is_int(frames) or not 1 <= frames <= MAX_FRAMES:
                raise BundleError("config", f"preprocessing.{key or 'num_frames'} must be an int in 1–{MAX_FRAMES}, got {frames!r}")
    else:
        height, width = DEFAULT_RESIZE
        if modality == "video":
            frames = DEFAULT_FRAMES
            if "num_frames" in pre or "max_frames" in pre:
                warnings.append("preprocessing.num_frames is ignored because preprocessing.resize is missing: "
                                f"the evaluator sends {DEFAULT_FRAMES} frames at {DEFAULT_RESIZE[0]}×{DEFAULT_RESIZE[1]}")
    frame_rate = pre.get("frame_rate")
    if frame_rate is not None:
        if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float)) or not math.isfinite(frame_rate) \
                or frame_rate <= 0:
            raise BundleError("config", f"preprocessing.frame_rate must be a finite number > 0, got {frame_rate!r}")
        frame_rate = float(frame_rate)
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise BundleError("config", "model must be a mapping")
    num_classes = model.get("num_classes", DEFAULT_NUM_CLASSES)
    if not _is_int(num_classes) or num_classes < 1:
        raise BundleError("config", f"model.num_classes must be a positive int, got {num_classes!r}")
    weights_file = model.get("weights_file", DEFAULT_WEIGHTS_FILE)
    if not isinstance(weights_file, str) or not weights_file:
        raise BundleError("config", f"model.weights_file must be a file name, got {weights_file!r}")
    kwargs = {k: v for k, v in model.items() if k != "weights_file"}
    kwargs["num_classes"] = num_classes
    return BundleConfig(dtype=dtype, height=height, width=width, num_frames=frames,
                        frame_rate=frame_rate if modality == "video" else None, num_classes=num_classes,
                        weights_file=weights_file, model_kwargs=kwargs, warnings=tuple(warnings))


def read_model_config(bundle_dir: Path | str, modality: str) -> BundleConfig:
    """Read and parse `model_config.yaml` in `bundle_dir`."""
    import yaml

    path = Path(bundle_dir) / CONFIG_FILE
    if not path.is_file():
        raise BundleError("config", f"{path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError("config", f"{CONFIG_FILE} is not valid YAML ({first})") from exc
    return parse_model_config(raw, modality)


@dataclass
class LoadedBundle:
    """A bundle loaded as the evaluator loads it."""

    module: Any  # torch.nn.Module
    config: BundleConfig
    param_dtype: str
    device: str
    module_class: str

    def info(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "param_dtype": self.param_dtype, "device": self.device,
                "module_class": self.module_class}


def _traceback_tail(limit: int = 4000) -> str:
    return traceback.format_exc()[-limit:]


def import_model_module(bundle_dir: Path | str) -> Any:
    """Import `model.py` by file location as `custom_model`, outside any package."""
    path = Path(bundle_dir) / MODEL_FILE
    if not path.is_file():
        raise BundleError("import", f"{path} does not exist")
    spec = importlib.util.spec_from_file_location(MODULE_NAME, str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # noqa: BLE001 - whatever model.py raises is the bundle's failure
        sys.modules.pop(MODULE_NAME, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise BundleError("import", f"importing model.py raised {type(exc).__name__}: {exc}", _traceback_tail()) from exc
    return module


def call_load_model(load_model: Any, weights_path: str, kwargs: dict[str, Any]) -> Any:
    """Bind the full keywords first, else `num_classes` alone; an error inside load_model is not retried."""
    try:
        signature = inspect.signature(load_model)
    except (TypeError, ValueError) as exc:
        raise BundleError("load_model", f"load_model has no inspectable signature ({exc})") from exc
    try:
        signature.bind(weights_path, **kwargs)
        call_kwargs = kwargs
    except TypeError:
        try:
            signature.bind(weights_path, num_classes=kwargs["num_classes"])
        except TypeError as exc:
            raise BundleError("load_model", f"load_model{signature} accepts neither the model: keywords "
                                            f"({', '.join(sorted(kwargs))}) nor num_classes alone") from exc
        call_kwargs = {"num_classes": kwargs["num_classes"]}
    try:
        return load_model(weights_path, **call_kwargs)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise BundleError("load_model", f"load_model raised {type(exc).__name__}: {exc}", _traceback_tail()) from exc


def load_bundle(bundle_dir: Path | str, modality: str, device: str = "cpu") -> LoadedBundle:
    """Read the config, import model.py, call load_model and move the module as the evaluator does."""
    import torch

    bundle_dir = Path(bundle_dir)
    config = read_model_config(bundle_dir, modality)
    weights = bundle_dir / config.weights_file
    if not weights.is_file():
        raise BundleError("config", f"the weights file {config.weights_file} named by model.weights_file does not exist")
    module = import_model_module(bundle_dir)
    load_model = module.__dict__.get("load_model")
    if not callable(load_model):
        raise BundleError("load_model", "model.py defines no load_model function")
    model = call_load_model(load_model, str(weights), config.model_kwargs)
    if not isinstance(model, torch.nn.Module):
        raise BundleError("load_model", f"load_model returned a {type(model).__name__}, not a torch.nn.Module")
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[config.dtype]
    try:
        model = model.to(device, dtype).eval()
    except Exception as exc:  # noqa: BLE001
        raise BundleError("to", f".to({device}, {config.dtype}) raised {type(exc).__name__}: {exc}", _traceback_tail()) from exc
    first = next(iter(model.parameters()), None)
    param_dtype = str(first.dtype).replace("torch.", "") if first is not None else config.dtype
    return LoadedBundle(module=model, config=config, param_dtype=param_dtype, device=device,
                        module_class=type(model).__name__)


def parse_output(output: Any, batch_size: int, num_classes: int | None = None) -> np.ndarray:
    """The evaluator's reading of a forward's result → float32 `[B, K]` on the CPU."""
    import torch

    value = output
    if not isinstance(value, torch.Tensor):
        if hasattr(value, "logits") and not isinstance(value, dict):
            value = value.logits
        elif isinstance(value, dict):
            if "logits" in value:
                value = value["logits"]
            elif "output" in value:
                value = value["output"]
            elif len(value) == 1:
                value = next(iter(value.values()))
            else:
                raise BundleError("output", f"a dict output needs 'logits' or 'output' (or one value), got keys {sorted(value)}")
        elif isinstance(value, (tuple, list)) and len(value) == 1:
            value = value[0]
    if not isinstance(value, torch.Tensor):
        raise BundleError("output", f"forward returned a {type(output).__name__}; return a tensor of logits [B, K]")
    if value.dim() == 0 or value.shape[0] != batch_size:
        raise BundleError("output", f"output shape {list(value.shape)} does not have the input batch {batch_size} first")
    value = value.reshape(batch_size, -1)
    accepted = set(ACCEPTED_LAST_DIMS) | ({num_classes} if num_classes else set())
    if value.shape[-1] not in accepted:
        raise BundleError("output", f"output has {value.shape[-1]} values per sample; the evaluator accepts "
                                    f"{', '.join(str(k) for k in sorted(accepted))}")
    return value.detach().to("cpu", torch.float32).numpy()


def run_batch(loaded: LoadedBundle, batch: np.ndarray) -> np.ndarray:
    """One evaluator forward: the raw uint8 batch on the device, under no_grad, output parsed."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(loaded.device)
    try:
        with torch.no_grad():
            output = loaded.module(tensor)
    except Exception as exc:  # noqa: BLE001
        raise BundleError("forward", f"forward on {list(batch.shape)} {batch.dtype} raised {type(exc).__name__}: {exc}",
                          _traceback_tail()) from exc
    return parse_output(output, batch.shape[0], loaded.config.num_classes)


# ---------------------------------------------------------------------------------------------------------------
# The worker: this file run as `python -I bundle_runtime.py BUNDLE_DIR MODALITY DEVICE THREADS`.
# Messages are framed as <u64 header length><JSON header>[<raw array bytes>]; requests come on stdin, replies go
# out on a private copy of the original stdout, and the process's own fd 1 is pointed at stderr, so whatever
# model.py prints cannot corrupt the replies.

_HEADER = struct.Struct("<Q")


class _RefuseKitImports:
    """A meta path finder that makes `import discriminator` (etc.) fail, as it would on the network."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in KIT_PACKAGES:
            raise ModuleNotFoundError(f"No module named '{name}' (the evaluator has no sn34-kit installed)")
        return None


def _write_message(stream: Any, header: dict[str, Any], payload: bytes = b"") -> None:
    data = json.dumps(header).encode()
    stream.write(_HEADER.pack(len(data)) + data + payload)
    stream.flush()


def _read_exact_stream(stream: Any, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("the parent closed the pipe")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _serve(bundle_dir: str, modality: str, device: str, threads: int) -> int:
    sys.meta_path.insert(0, _RefuseKitImports())
    refuse_network()
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # model.py's prints go to stderr, which the parent drains
    requests = sys.stdin.buffer
    runtime = library_versions()
    try:
        keep_freed_memory()
        import torch

        runtime["cuda_available"] = bool(torch.cuda.is_available())
        if device == "auto":  # the evaluator's choice: CUDA when this torch sees a GPU
            device = "cuda" if runtime["cuda_available"] else "cpu"
        if threads > 0:
            torch.set_num_threads(threads)
        loaded = load_bundle(bundle_dir, modality, device)
        runtime["notes"] = _torchvision_notes()
    except BundleError as exc:
        _write_message(replies, {"ok": False, "stage": exc.stage, "message": exc.message, "detail": exc.detail,
                                 "runtime": runtime})
        return 1
    except BaseException as exc:  # noqa: BLE001
        _write_message(replies, {"ok": False, "stage": "load_model", "message": f"{type(exc).__name__}: {exc}",
                                 "detail": _traceback_tail(), "runtime": runtime})
        return 1
    _write_message(replies, {"ok": True, "info": {**loaded.info(), "runtime": runtime}})
    while True:
        try:
            (length,) = _HEADER.unpack(_read_exact_stream(requests, _HEADER.size))
            header = json.loads(_read_exact_stream(requests, length))
        except EOFError:
            return 0
        if header.get("cmd") == "close":
            # Nothing is left to write: skip the interpreter's teardown (freeing torch and the model took 0.5 s of
            # every bench on a 2-core CPU, and the parent waits for this process to end).
            replies.flush()
            sys.stderr.flush()
            os._exit(0)
        shape = tuple(header["shape"])
        raw = _read_exact_stream(requests, int(header["nbytes"]))
        batch = np.frombuffer(bytearray(raw), dtype=np.dtype(header["dtype"])).reshape(shape)
        try:
            started = time.perf_counter()
            out = run_batch(loaded, batch)
            seconds = time.perf_counter() - started
        except BundleError as exc:
            _write_message(replies, {"ok": False, "stage": exc.stage, "message": exc.message, "detail": exc.detail})
            continue
        except BaseException as exc:  # noqa: BLE001
            _write_message(replies, {"ok": False, "stage": "forward", "message": f"{type(exc).__name__}: {exc}",
                                     "detail": _traceback_tail()})
            continue
        out = np.ascontiguousarray(out, dtype=np.float32)
        _write_message(replies, {"ok": True, "shape": list(out.shape), "dtype": "float32", "seconds": seconds},
                       out.tobytes())


class BundleWorker:
    """A bundle loaded in a fresh `python -I` process; `run()` sends one batch and waits for its logits."""

    def __init__(self, bundle_dir: Path | str, modality: str, device: str = "cpu", load_timeout_s: float = 300.0,
                 python: str | None = None, threads: int = 0, wait: bool = True):
        """Start the worker under `python`, else the runtime `validator_sim.runtime.current_runtime()` picks.

        With `wait` (the default) this returns once the bundle is loaded, or raises its BundleError; without it,
        the process loads in the background and `wait_loaded()` (which `run()` calls first) collects the answer.
        """
        from validator_sim.runtime import Runtime, current_runtime

        self.runtime: Runtime = Runtime("python", python) if python else current_runtime()
        self.bundle_dir = Path(bundle_dir).resolve()
        self.modality = modality
        self._log = collections.deque()
        self._log_size = 0
        self._log_lock = threading.Lock()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self._proc = subprocess.Popen(
            [self.runtime.python, "-I", "-u", "-B", str(Path(__file__).resolve()), str(self.bundle_dir), modality,
             device, str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(self.bundle_dir), env=env)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        self._started = time.perf_counter()
        self._load_deadline = time.monotonic() + load_timeout_s
        self._load_error: BundleError | None = None
        self.seconds_to_load = 0.0
        self.info: dict[str, Any] = {}
        self._loaded = False
        if wait:
            self.wait_loaded()

    def wait_loaded(self) -> dict[str, Any]:
        """The worker's `info` once the bundle is loaded; BundleError (the same one on every call) if it failed."""
        if self._loaded:
            return self.info
        if self._load_error is not None:
            raise self._load_error
        try:
            header, _ = self._receive(max(0.0, self._load_deadline - time.monotonic()), "loading the bundle")
        except BundleError as exc:
            self._load_error = exc
            self.close()
            raise
        except BaseException:
            self.close()
            raise
        self.seconds_to_load = time.perf_counter() - self._started
        if not header.get("ok"):
            self.close()
            self._load_error = BundleError(header.get("stage", "load_model"), header.get("message", "failed"),
                                           header.get("detail", "") + self._tail_note(), runtime=header.get("runtime"))
            raise self._load_error
        self.info = header["info"]
        self._loaded = True
        return self.info

    # -- plumbing ---------------------------------------------------------------------------------------------
    def _drain_stderr(self) -> None:
        stream = self._proc.stderr
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                return
            with self._log_lock:
                self._log.append(chunk)
                self._log_size += len(chunk)
                while self._log_size > LOG_TAIL_BYTES and len(self._log) > 1:
                    self._log_size -= len(self._log.popleft())

    @property
    def log_tail(self) -> str:
        with self._log_lock:
            data = b"".join(self._log)[-LOG_TAIL_BYTES:]
        return data.decode("utf-8", errors="replace")

    def _tail_note(self) -> str:
        tail = self.log_tail.strip()
        return f"\n--- model.py output (tail) ---\n{tail[-2000:]}" if tail else ""

    def _read_exact(self, size: int, deadline: float, doing: str) -> bytes:
        fd = self._proc.stdout.fileno()
        chunks, remaining = [], size
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close(kill=True)
                raise BundleError("timeout", f"no answer within the time limit while {doing}", self._tail_note())
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                code = self._proc.wait(timeout=5)
                raise BundleError("crash", f"the process exited with code {code} while {doing}", self._tail_note())
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _receive(self, timeout_s: float, doing: str) -> tuple[dict[str, Any], bytes]:
        deadline = time.monotonic() + timeout_s
        (length,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline, doing))
        header = json.loads(self._read_exact(length, deadline, doing))
        payload = b""
        if header.get("ok") and "shape" in header:
            count = int(np.prod(header["shape"])) * 4
            payload = self._read_exact(count, deadline, doing)
        return header, payload

    # -- public -----------------------------------------------------------------------------------------------
    def run(self, batch: np.ndarray, timeout_s: float = 120.0) -> np.ndarray:
        """Logits `[B, K]` float32 for one uint8 batch, or BundleError (forward/output/timeout/crash)."""
        self.wait_loaded()
        if self._proc.poll() is not None:
            raise BundleError("crash", f"the bundle process is gone (exit code {self._proc.returncode})", self._tail_note())
        batch = np.ascontiguousarray(batch)
        header = {"cmd": "run", "shape": list(batch.shape), "dtype": str(batch.dtype), "nbytes": batch.nbytes}
        doing = f"running a {list(batch.shape)} batch"
        try:
            _write_message(self._proc.stdin, header, batch.tobytes())
        except (BrokenPipeError, OSError) as exc:
            raise BundleError("crash", f"the bundle process stopped reading ({exc})", self._tail_note()) from exc
        reply, payload = self._receive(timeout_s, doing)
        if not reply.get("ok"):
            raise BundleError(reply.get("stage", "forward"), reply.get("message", "failed"), reply.get("detail", ""))
        self.last_seconds = float(reply.get("seconds", 0.0))
        return np.frombuffer(payload, dtype=np.float32).reshape(reply["shape"]).copy()

    def close(self, kill: bool = False) -> None:
        proc = self._proc
        if proc.poll() is None:
            if not kill and self._loaded:  # one still loading reads no request until it is done: stop it now
                try:
                    _write_message(proc.stdin, {"cmd": "close"})
                    proc.wait(timeout=10)
                except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                    pass
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> "BundleWorker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0))
