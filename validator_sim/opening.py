"""Which model a bench opens, under which profile, and a bundle worker started before the bench needs it.

A bundle under the evaluator's runtime loads in a worker process whose start is mostly
`import torch` (1.3–1.7 s for the evaluator's CUDA build on a 2-core CPU). `kit bench`
spends about 0.4 s before it opens the model (its own imports, reading the datasets),
so it calls `start_early` first (through `started_early`, which scopes it to the command):
the worker starts loading then, and the run adopts it (`take_early`) when it opens the same
model with the same settings, reading the model as `start_early` read it
(`load_model_artifact`). A worker nobody adopts is stopped when the command ends, or at
the latest when the process exits. Anything `start_early` cannot decide cheaply
(a model that does not load, a bundle that names no modality, a sharded run) is left to
the run, which reports it in its usual order.

This module stays light to import (no onnxruntime, OpenCV or PyAV), since it runs first.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from discriminator.artifact import Artifact, formats_in, load_artifact
from discriminator.errors import KitError
from discriminator.formats import format_row
from validator_sim.profiles import DEFAULT_PROFILE, Profile, get_profile

if TYPE_CHECKING:
    from validator_sim.bundle_runtime import BundleWorker


def default_profile(model_path: Path | str, model_format: str | None = None) -> str:
    """The era a model is benched under when `--profile` is not given: `current` (the network today) for a bundle,
    or a build folder holding one; the ONNX era's rules for an ONNX file, which only that era accepted."""
    formats = (model_format,) if model_format else (formats_in(model_path) if Path(model_path).exists() else ())
    return "current" if not formats or any(format_row(f).accepted_now for f in formats) else DEFAULT_PROFILE


def load_model_artifact(model_path: Path | str, model_format: str | None, profile: Profile) -> Artifact:
    """The model to bench: the format asked for, else the one the profile's evaluator ran when a build folder has both.

    When `start_early` read this model for these options, that reading is returned rather than the files read
    again (a ViT-L bundle's weights are over a gigabyte: 1.5–5 s to read here)."""
    asked = _asked(model_path, model_format, profile)
    for early in _waiting.values():
        if early.asked == asked:
            return early.artifact
    if model_format is None and Path(model_path).is_dir() and profile.preferred_format in formats_in(model_path):
        model_format = profile.preferred_format
    return load_artifact(model_path, model_format)


@dataclass
class EarlyWorker:
    """A worker loading a bundle ahead of the run, the folder it loads from (a zip's members unpacked), and the
    model as `start_early` read it."""

    worker: "BundleWorker"
    bundle_dir: Path
    #: Removes the unpacked folder, if any; whoever adopts the worker closes it after the worker.
    cleanup: ExitStack
    artifact: Artifact
    #: (model path, --format, profile name) it was read for: `load_model_artifact` hands it out for the same.
    asked: tuple[str, str | None, str]

    def close(self) -> None:
        try:
            self.worker.close()
        finally:
            self.cleanup.close()


_waiting: dict[tuple, EarlyWorker] = {}
_cleanup_at_exit = False


def _asked(model_path: Path | str, model_format: str | None, profile: Profile) -> tuple[str, str | None, str]:
    return (str(Path(model_path).resolve()), model_format, profile.name)


def _key(artifact: Artifact, modality: str, threads: int) -> tuple:
    from validator_sim.runtime import current_runtime

    return (str(Path(artifact.source).resolve()), artifact.format, modality, threads, current_runtime().python)


def start_early(model_path: Path | str, profile: str | None, model_format: str | None, modality: str | None,
                threads: int | None, shards: int | None = None) -> bool:
    """Start loading the bundle `kit bench MODEL` will open, when the run will open it in one worker with these
    settings (`threads` None: every core). True when a worker was started."""
    from validator_sim.bundle_runtime import BundleError, BundleWorker
    from validator_sim.runtime import current_runtime
    from discriminator.check.context import default_threads

    if shards not in (None, 1) or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return False  # each process of a sharded run opens its own, with its share of the cores
    if current_runtime().kind == "kit" or (threads is not None and threads < 1):
        return False  # in-process: nothing to overlap
    try:
        chosen = get_profile(profile or default_profile(model_path, model_format))
        artifact = load_model_artifact(model_path, model_format, chosen)
    except KitError:
        return False  # the run says so, after checking its other inputs
    if not format_row(artifact.format).loads_in_worker:
        return False
    from discriminator.check.bundle_context import bundle_modality

    declared = bundle_modality(artifact, modality)
    if declared is None:
        return False  # the run infers it from the datasets
    threads = threads or default_threads()
    key = _key(artifact, declared, threads)
    if key in _waiting:
        return False
    cleanup = ExitStack()
    try:
        bundle_dir = cleanup.enter_context(artifact.bundle_dir())
        worker = BundleWorker(bundle_dir, declared, device="auto", threads=threads, load_timeout_s=600.0, wait=False)
    except (BundleError, OSError):
        cleanup.close()
        return False
    global _cleanup_at_exit
    if not _cleanup_at_exit:
        atexit.register(_close_waiting)
        _cleanup_at_exit = True
    _waiting[key] = EarlyWorker(worker, bundle_dir, cleanup, artifact, _asked(model_path, model_format, chosen))
    return True


@contextmanager
def started_early(model_path: Path | str, profile: str | None, model_format: str | None, modality: str | None,
                  threads: int | None, shards: int | None = None) -> Iterator[bool]:
    """`start_early` for the span of one command: a worker the command's run did not adopt is stopped on leaving,
    whether the command ended well or not (a command run in-process, as tests and library callers do, would
    otherwise leave it loaded until the interpreter exits)."""
    before = set(_waiting)
    try:
        yield start_early(model_path, profile, model_format, modality, threads, shards)
    finally:
        for key in set(_waiting) - before:
            _waiting.pop(key).close()


def take_early(artifact: Artifact, modality: str, threads: int) -> EarlyWorker | None:
    """The worker `start_early` started for this model and settings, now the caller's to close; else None."""
    if not _waiting:
        return None
    return _waiting.pop(_key(artifact, modality, threads), None)


def _close_waiting() -> None:
    while _waiting:
        _, early = _waiting.popitem()
        early.close()

