"""The run loop: plan → decode → preprocess → batch → infer → score, with decoding overlapping inference.

`run_request` is the library entry point `kit bench` is a thin layer over: it takes one
`BenchRequest` (everything the command was asked; `run_bench` builds one from keywords). A producer
thread streams payloads in listing order and hands each sample to a pool of decode
workers; finished batches wait in a bounded queue while the main thread runs the
previous one through the model's session (onnxruntime, or torch for a bundle), so
memory stays bounded by a few batches however large the datasets are. Samples that
cannot be decoded are counted with their reason; a failing batch becomes error rows
and the run goes on, or — where the profile's evaluator voids the run — stops it as
unscorable; Ctrl-C stops the run and the reports of what was scored so far are still
written, marked incomplete. The robustness pass and the comparison with another run
follow the base pass.

A sharded run (`BenchRequest.shard`, driven by `validator_sim.shards`) numbers the
batches of the frozen plan as one process would cut them, and each process decodes
and infers only its own (batch number mod process count). It records what happened
to each batch (`BatchOutcome`) instead of scoring it; rank 0 gathers every process's
outcomes and replays them in plan order through the same `_collect_batch` and
`_record_inference` a single process runs, so the records, and every figure built
from them, are those of a single-process run.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from discriminator.artifact import Artifact
from discriminator.check.bundle_context import bundle_modality
from discriminator.check.context import default_threads
from discriminator.errors import InputError, KitError, OutputExistsError, UsageError
from discriminator.formats import FORMATS
from discriminator.spec import DetectorSpec
from validator_sim.datasets import (
    RENDERED_READINGS,
    Dataset,
    Listing,
    binary_label,
    choose_samples,
    class_label,
    iter_payloads,
    list_samples,
)
from validator_sim.decode import DecodeError, DecordChannelClip
from validator_sim.metrics import MULTICLASS_K
from validator_sim.pixel_cache import PixelCache, pixel_recipe
from validator_sim.prepare import prepare_sample
from validator_sim.opening import default_profile, load_model_artifact, take_early
from validator_sim.profiles import Profile, get_profile
from validator_sim.sample_feed import SampleFeed
from validator_sim.scoring import EXAM_SAMPLES_PER_DATASET, ScoringOptions, score_row
from validator_sim.shard_plan import BatchOutcome, Inference, Shard, ShardLink, ShardReport
from validator_sim.session import ModelIO, ModelSession, OnnxSession, open_bundle_session
from validator_sim.timing import StageTimings


@dataclass(frozen=True)
class Mode:
    """How many samples a run takes (contract §5)."""

    name: str
    description: str
    first_dataset_only: bool
    #: Samples per dataset by modality; None = all of them.
    cap: dict[str, int | None]


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("debug", "first dataset only, 100 images / 50 videos", True, {"image": 100, "video": 50}),
        Mode("small", f"every dataset, {EXAM_SAMPLES_PER_DATASET} samples each (mirrors the entrance exam)", False,
             {"image": EXAM_SAMPLES_PER_DATASET, "video": EXAM_SAMPLES_PER_DATASET}),
        Mode("full", "every sample of every dataset (cap with --max-per-dataset)", False, {"image": None, "video": None}),
    )
}
#: How the error of an interrupted run begins ("interrupted after N of M samples: …").
INTERRUPTED = "interrupted after"
#: Batches decoded ahead of the one being inferred: as many as fit in PREFETCH_BYTES, within these bounds. The
#: depth matters while a bundle's worker loads (1–2 s on a CPU): decoding runs ahead meanwhile, and two batches
#: of 4 clips were decoded long before the model was ready.
PREFETCH_BATCHES = (2, 8)
PREFETCH_BYTES = 256 << 20


def prefetch_depth(model_io: ModelIO, batch_size: int) -> int:
    """How many batches of `model_io`'s uint8 input may wait decoded: PREFETCH_BYTES' worth, within PREFETCH_BATCHES."""
    sample = 3 * model_io.height * model_io.width * (model_io.frames or 1)
    least, most = PREFETCH_BATCHES
    return max(least, min(most, PREFETCH_BYTES // max(1, sample * batch_size)))


@dataclass
class DatasetPlan:
    """One dataset's listing and the samples chosen from it."""

    dataset: Dataset
    listing: Listing | None
    indices: list[int]
    #: Why the dataset could not be read at all, if it could not.
    error: str | None = None


@dataclass
class RunState:
    """Everything a run has gathered, complete or not; the reports are built from it."""

    profile: Profile
    mode: Mode
    model_source: Path
    model_name: str
    model_io: ModelIO
    spec: DetectorSpec | None
    session_settings: dict[str, Any]
    batch_size: int
    #: None: SampleFeed chooses the count by measurement.
    decode_workers: int | None
    seed: int
    max_per_dataset: int | None
    frame_rate: float | None
    plans: list[DatasetPlan]
    started_at: datetime
    warnings: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    #: dataset name → list of (sample key, reason)
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: What the real validator would have done differently, in words.
    validator_treatment: list[str] = field(default_factory=list)
    completed: bool = True
    finished_at: datetime | None = None
    wall_s: float = 0.0
    #: In front of decoding (None: decode every sample).
    pixel_cache: PixelCache | None = None
    #: The decode split and the cache's work (SampleFeed.report()), merged into results["kit"].
    feed_report: dict[str, Any] = field(default_factory=dict)
    inference_s: float = 0.0
    #: How the records become scores (the selected reading, provenance shares, class count).
    scoring: ScoringOptions = field(default_factory=ScoringOptions)
    #: How `rendered/` datasets are labelled: "real" or "fourth-class".
    rendered: str = "real"
    #: Why the evaluator would not score this run at all (current: an inference failure), else None.
    invalidated: str | None = None
    #: What the network refuses the submission for before any exam (the format row's `refusals`), one line each.
    refused: list[str] = field(default_factory=list)
    #: Dataset name → why the ONNX-era evaluator lost the rest of it (decord's N-channel frames).
    lost_datasets: dict[str, str] = field(default_factory=dict)
    #: "onnx" or "bundle": which of the model's formats was benched.
    model_format: str = "onnx"
    #: The robustness pass's records (current-contract §6), when one ran.
    robustness: dict[str, Any] | None = None
    #: Seconds per pipeline stage of the base pass (results["metrics"]["performance"]).
    timings: StageTimings = field(default_factory=StageTimings)
    #: Cores this process may use (the machine's, shared out among the shards running on it).
    cores: int = field(default_factory=default_threads)
    #: This process's part of a sharded run (None: the whole plan).
    shard: Shard | None = None


class RunInvalidated(Exception):
    """Raised inside the run loop when the profile voids the whole run at the first inference failure."""


@dataclass
class BenchResult:
    """A finished (or interrupted) run: the results document, the per-sample rows, and the files written."""

    results: dict[str, Any]
    records: list[dict[str, Any]]
    out_dir: Path | None
    paths: dict[str, Path]

    @property
    def completed(self) -> bool:
        return bool(self.results["metadata"]["completed"])


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise UsageError(f"unknown mode {name!r}", f"choose one of: {', '.join(MODES)}")
    return MODES[name]


def default_out_dir(model_name: str, when: datetime) -> Path:
    return Path("results") / f"{model_name}-{when.strftime('%Y%m%d-%H%M%S')}"


def prepare_out_dir(out_dir: Path, force: bool) -> Path:
    """Create `out_dir`; refuse one that already holds files unless `force`."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} is a file", "choose a folder for the reports")
        if any(out_dir.iterdir()) and not force:
            raise OutputExistsError(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def spec_mismatches(spec: DetectorSpec | None, model_io: ModelIO) -> list[str]:
    """Where the kit manifest disagrees with what the validator reads from the graph."""
    if spec is None:
        return []
    found = []
    if spec.modality != model_io.modality:
        found.append(f"the manifest says {spec.modality} but the graph's input is shaped for {model_io.modality}")
    if (spec.height, spec.width) != (model_io.height, model_io.width):
        found.append(f"the manifest says {spec.height}×{spec.width} but the validator will send "
                     f"{model_io.height}×{model_io.width} (read from the graph)")
    if model_io.modality == "video" and spec.frames is not None and spec.frames != model_io.frames:
        found.append(f"the manifest says T={spec.frames} but the validator will send T={model_io.frames}")
    return found


_END = object()


def _produce(plans: list[DatasetPlan], batch_size: int, pool: ThreadPoolExecutor, out: queue.Queue,
             stop: threading.Event, prepare: Callable[[bytes | Path], Any], shard: Shard | None) -> None:
    """Stream every chosen payload into decode jobs, one numbered batch per queue item; ends with `_END`.

    Batches are numbered over the whole plan as one process cuts them; a shard submits only its own and
    passes over the others' payloads undecoded.
    """

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    number = 0  # of the batch being filled

    def mine() -> bool:
        return shard is None or shard.owns(number)

    try:
        for plan in plans:
            if plan.listing is None or not plan.indices:
                continue
            pending: list[tuple[str, Future | None]] = []
            try:
                for key, payload in iter_payloads(plan.listing, plan.indices):
                    pending.append((key, pool.submit(prepare, payload) if mine() else None))
                    if len(pending) == batch_size:
                        if mine() and not put((number, plan, pending)):
                            return
                        number, pending = number + 1, []
            except Exception as exc:  # a source damaged mid-read (zip, tar, pyarrow errors): report it, go on
                if mine():
                    put(("dataset-error", number, plan, str(exc) or type(exc).__name__))
            if pending:
                if mine() and not put((number, plan, pending)):
                    return
                number += 1
    except BaseException as exc:  # handed to the main thread, which re-raises it
        put(("crash", exc))
    finally:
        put(_END)


@dataclass(frozen=True)
class BenchRequest:
    """Everything `kit bench` was asked, as one value: the model, the data and every option.

    The CLI builds one from its flags; `run_request` reads it and nothing else. Fields keep
    the CLI's meaning and defaults (None: the profile's or the machine's choice).
    """

    model_path: Path
    datasets: tuple[Dataset, ...]
    #: A profile name or record; None: `current` for a bundle, the ONNX era for an ONNX file.
    profile: Profile | str | None = None
    mode: str = "small"
    max_per_dataset: int | None = None
    seed: int = 0
    batch_size: int | None = None
    threads: int | None = None
    decode_workers: int | None = None
    frame_rate: float | None = None
    #: In front of decoding (None: decode every sample).
    pixel_cache: PixelCache | None = None
    #: Which sn34 reading is `sn34_score` (None: the profile's).
    scoring: str | None = None
    #: Provenance shares (current-contract §5); empty: every weight is 1.
    shares: tuple[tuple[str, float], ...] = ()
    #: How `rendered/` datasets count: "real" or "fourth-class".
    rendered: str = "real"
    #: Robustness pass on this many samples per dataset (0: none), blended with `aug_weight`.
    robustness: int = 0
    aug_weight: float = 0.2
    #: "onnx" or "bundle" in a build folder holding both (None: the profile's evaluator's format).
    model_format: str | None = None
    #: A bundle's modality when neither its manifest nor its datasets say.
    modality: str | None = None
    #: An earlier run's results.json, or another model benched here on the same samples.
    compare: Path | None = None
    out_dir: Path | None = None
    force: bool = False
    #: False: nothing is written and `out_dir` is ignored.
    write: bool = True
    #: False: the PNG plots are left to the caller.
    plots: bool = True
    #: This process's part of a sharded run (None: one process benches the whole plan).
    shard: Shard | None = None

    @classmethod
    def of(cls, model_path: Path | str, datasets: list[Dataset], profile: Profile | str | None = None,
           **options: Any) -> "BenchRequest":
        """A request from plain values: paths as str or Path, `shares` as a dict."""
        shares = options.pop("shares", None) or {}
        for name in ("compare", "out_dir"):
            if options.get(name) is not None:
                options[name] = Path(options[name])
        return cls(Path(model_path), tuple(datasets), profile, shares=tuple(sorted(shares.items())), **options)


def run_bench(model_path: Path | str, datasets: list[Dataset], profile: Profile | str | None = None, *,
              on_progress: Callable[[int, int], None] | None = None, **options: Any) -> BenchResult:
    """`run_request` on `BenchRequest.of(model_path, datasets, profile, **options)`: the library's short form."""
    result = run_request(BenchRequest.of(model_path, datasets, profile, **options), on_progress)
    assert result is not None  # only a sharded request's other ranks get None
    return result


def run_request(request: BenchRequest, on_progress: Callable[[int, int], None] | None = None,
                link: ShardLink | None = None) -> BenchResult | None:
    """Score the requested model on the requested datasets exactly as the validator would, and write the reports.

    `on_progress(done, total)` is called after each batch (samples handled so far).
    A request with a `shard` needs the `link` to its other processes; rank 0 returns the result of
    the whole run, the other ranks None.
    `scoring` picks which sn34 reading is `sn34_score`; `shares` are the provenance shares; `rendered` reads
    `rendered/` datasets as real or as a fourth class; `robustness` N > 0 runs the robustness pass on N samples
    per dataset, blended with `aug_weight`. `compare` is an earlier run's results.json, or another model, benched
    here on the same samples under the same rules: the paired Δsn34 against it lands in `results["kit"]["compare"]`
    (with `refused` saying why when the runs scored different samples).
    """
    profile = request.profile
    if profile is None:
        profile = default_profile(request.model_path, request.model_format)
    profile = get_profile(profile) if isinstance(profile, str) else profile
    get_mode(request.mode)  # an unknown mode is refused before the model loads
    if request.frame_rate is not None and not profile.frame_rate_stepping:
        raise UsageError(f"profile {profile.name} always takes consecutive frames", "drop --frame-rate, or use --profile current")
    if (request.shard is None) != (link is None):
        raise ValueError("a sharded request needs a ShardLink, and only a sharded one takes it")
    if request.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {request.seed}", "pass e.g. --seed 0")
    for name, value in (("--max-per-dataset", request.max_per_dataset), ("--batch-size", request.batch_size),
                        ("--threads", request.threads), ("--decode-workers", request.decode_workers)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}", f"pass a positive {name}")
    if not request.datasets:
        raise UsageError("no datasets to bench on", "pass --data DIR or --datasets FILE.yaml")
    options = scoring_options(profile, request.scoring, dict(request.shares), request.rendered)
    if request.robustness < 0:
        raise UsageError(f"--robustness must be 0 or more, got {request.robustness}",
                         "pass the samples per dataset, e.g. 20")
    if not 0.0 <= request.aug_weight <= 1.0:
        raise UsageError(f"--aug-weight must be between 0 and 1, got {request.aug_weight}", "the evaluator uses 0.2")
    from validator_sim.reports import load_run_records

    compare = request.compare
    if compare is not None and not compare.exists():
        raise InputError(f"--compare {compare} does not exist", "pass another run's results.json, or another model")
    other_records = load_run_records(compare) if compare is not None and is_results_path(compare) else None
    with ExitStack() as stack:
        result = _run(request, profile, options, stack, on_progress, link)
    if compare is not None and other_records is None:  # another model: bench it on the same samples, same rules
        other = run_request(replace(request, model_path=compare, profile=profile, robustness=0, aug_weight=0.2,
                                    compare=None, out_dir=None, force=False, write=False), link=link)
        other_records = other.records if other is not None else None
    if result is None:  # a shard other than rank 0: its records went to rank 0
        return None
    if compare is not None and other_records is not None:
        attach_comparison(result, other_records, options, compare)
    return result


def is_results_path(path: Path | str) -> bool:
    """Whether `--compare` names an earlier run (its results.json, or the folder holding one) rather than a model."""
    path = Path(path)
    return path.suffix.lower() == ".json" or (path.is_dir() and (path / "results.json").is_file())


def attach_comparison(result: "BenchResult", other_records: list[dict[str, Any]], options: ScoringOptions,
                      other_path: Path) -> None:
    """Add the paired Δsn34 against another run to the results (and rewrite results.json when one was written)."""
    from validator_sim.reports import RESULTS_NAME, to_strict_json
    from validator_sim.scoring import paired_comparison

    try:
        comparison = paired_comparison(result.records, other_records, options)
    except UsageError as exc:
        comparison = {"refused": exc.one_line()}
    comparison["other_results"] = str(other_path)
    result.results["kit"]["compare"] = comparison
    if result.out_dir is not None:
        temp = result.out_dir / f".{RESULTS_NAME}.partial"
        temp.write_text(to_strict_json(result.results) + "\n")
        os.replace(temp, result.out_dir / RESULTS_NAME)


def scoring_options(profile: Profile, scoring: str | None, shares: dict[str, float] | None,
                    rendered: str) -> ScoringOptions:
    """The run's ScoringOptions, with one-line errors for a bad choice."""
    chosen = scoring or profile.default_scoring
    if chosen not in ("binary", "multiclass"):
        raise UsageError(f"--scoring {chosen!r} is not binary or multiclass", "pass --scoring binary or --scoring multiclass")
    if rendered not in RENDERED_READINGS:
        raise UsageError(f"--rendered {rendered!r} is not one of {', '.join(RENDERED_READINGS)}",
                         "pass --rendered real (the newest evaluator) or --rendered fourth-class")
    classes = MULTICLASS_K + 1 if rendered == "fourth-class" else MULTICLASS_K
    return ScoringOptions(scoring=chosen, shares=dict(shares or {}), num_classes=classes)  # type: ignore[arg-type]


#: How the warning of a bundle benched in its datasets' modality begins (the CLI's fix for an unscorable run reads it).
MODALITY_GUESSED = "the bundle does not say whether it is an image or a video model"


def open_model(artifact: Artifact, profile: Profile, threads: int, modality: str | None, datasets: list[Dataset],
               stack: ExitStack) -> tuple[ModelSession, str]:
    """The session for the artifact's format (its row's `open_session`), and the model's display name."""
    return FORMATS[artifact.format].open_session(artifact, profile, threads, modality, datasets, stack)


def open_bundle_model(artifact: Artifact, profile: Profile, threads: int, modality: str | None, datasets: list[Dataset],
                      stack: ExitStack) -> tuple[ModelSession, str]:
    """A bundle run as the evaluator runs it, in the modality it declares or, failing that, its datasets' (the bundle
    row's `open_session`)."""
    declared = bundle_modality(artifact, modality)  # --modality, the spec, model.py's MODALITY, the YAML
    inferred = None if declared else _only_modality(datasets)
    name = artifact.spec.name if artifact.spec else (artifact.source.stem if artifact.source.is_file()
                                                      else artifact.source.name)
    early = take_early(artifact, declared, threads) if declared else None  # started by `kit bench` as it began
    if early is not None:
        stack.callback(early.cleanup.close)  # after the session's close below: the folder outlives the worker
        session = open_bundle_session(early.bundle_dir, declared, profile, threads, wait=False, worker=early.worker,
                                      label=str(artifact.source))
    else:
        bundle_dir = stack.enter_context(artifact.bundle_dir())
        session = open_bundle_session(bundle_dir, declared or inferred, profile, threads, wait=False,
                                      label=str(artifact.source))
    if hasattr(session, "close"):
        stack.callback(session.close)
    if inferred:
        session.io = replace(session.io, warnings=(*session.io.warnings, (
            f"{MODALITY_GUESSED}, so it is benched as "
            f"{'an image' if inferred == 'image' else 'a video'} model because the datasets are {inferred}: if that is wrong, every batch fails — pass --modality "
            "or add `modality:` to its model_config.yaml")))
    return session, name


def open_onnx_model(artifact: Artifact, profile: Profile, threads: int, modality: str | None, datasets: list[Dataset],
                    stack: ExitStack) -> tuple[ModelSession, str]:
    """An ONNX model in onnxruntime (the onnx row's `open_session`); its graph says its modality."""
    name = artifact.spec.name if artifact.spec else Path(artifact.onnx_name).stem
    return OnnxSession(artifact.onnx_bytes, profile, threads, label=str(artifact.source)), name


def _only_modality(datasets: list[Dataset]) -> str:
    found = sorted({d.modality for d in datasets})
    if len(found) != 1:
        raise UsageError("a bundle does not say whether it is an image or a video model, and the datasets hold both",
                         "pass --modality image or --modality video")
    return found[0]


def _run(request: BenchRequest, profile: Profile, options: ScoringOptions, stack: ExitStack,
         on_progress: Callable[[int, int], None] | None, link: ShardLink | None) -> BenchResult | None:
    from validator_sim.reports import build_results

    run_mode = get_mode(request.mode)
    datasets = list(request.datasets)
    started = datetime.now(timezone.utc)
    artifact = load_model_artifact(request.model_path, request.model_format, profile)
    shard = request.shard
    cores = max(1, default_threads() // (shard.local_count if shard else 1))
    threads = request.threads or cores
    # A bundle's worker may still be loading: its io comes from model_config.yaml, and the run waits for the
    # worker only once the first batches are decoding (`ready` below), so the two overlap.
    session, model_name = open_model(artifact, profile, threads, request.modality, datasets, stack)
    model_io = session.io
    warnings = list(model_io.warnings) + spec_mismatches(artifact.spec, model_io)
    refusals = FORMATS[artifact.format].refusals
    refused = list(refusals(artifact)) if refusals is not None else []
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        warnings.append(f"the network refuses this {artifact.format} before its entrance exam: {refused[0]}{more}; "
                        f"`kit check {artifact.source}` lists every one — the scores below are what the model would "
                        "get once fixed")
    frame_rate = _frame_rate_for(profile, request.frame_rate, session.frame_rate, warnings)
    usable = [d for d in datasets if d.modality == model_io.modality]
    other = [d.name for d in datasets if d.modality != model_io.modality]
    if not usable:
        raise UsageError(f"the model takes {model_io.modality} but every dataset is "
                         f"{'/'.join(sorted({d.modality for d in datasets}))}",
                         f"point --data at {model_io.modality} datasets")
    if other:
        warnings.append(f"skipped {len(other)} dataset(s) of another modality: {', '.join(other)}")
    if run_mode.first_dataset_only:
        usable = usable[:1]
    cap = request.max_per_dataset if request.max_per_dataset is not None else run_mode.cap[model_io.modality]

    plans = []
    for dataset in usable:
        try:
            listing = list_samples(dataset)
        except KitError as exc:
            plans.append(DatasetPlan(dataset, None, [], error=exc.one_line()))
            continue
        plans.append(DatasetPlan(dataset, listing, choose_samples(listing, cap, request.seed)))
    target_dir = None

    state = RunState(
        profile=profile, mode=run_mode, model_source=request.model_path, model_name=model_name, model_io=model_io,
        spec=artifact.spec, session_settings={},
        batch_size=request.batch_size or profile.batch_size_for(model_io.modality),
        decode_workers=request.decode_workers, seed=request.seed, max_per_dataset=request.max_per_dataset,
        frame_rate=frame_rate, plans=plans, started_at=started, warnings=warnings, pixel_cache=request.pixel_cache,
        scoring=options, rendered=request.rendered, model_format=artifact.format, cores=cores, shard=shard,
        refused=refused,
    )
    for plan in plans:
        if plan.error:
            state.errors.append(f"{plan.dataset.name}: {plan.error}")
        elif not plan.indices:
            state.warnings.append(f"dataset {plan.dataset.name} has no {model_io.modality} samples")

    def ready() -> None:
        """Once decoding has started: the model loaded (or its error), then the report folder."""
        nonlocal target_dir
        session.wait_ready()
        state.session_settings = session.settings
        if request.write and (shard is None or shard.index == 0):  # only once every input has been checked, so a
            target_dir = prepare_out_dir(request.out_dir or default_out_dir(model_name, started), request.force)

    shards_summary = None
    if link is None:
        _score(state, session, on_progress, None, ready)
    else:
        reports = link.gather(_score(state, session, on_progress, link, ready))
        if reports is None:
            return None
        shards_summary = replay_shards(state, reports)
    if request.robustness and state.completed and not state.invalidated:
        from validator_sim.robustness import run_robustness_pass

        state.robustness = run_robustness_pass(state, session, request.robustness, request.aug_weight)
    results = build_results(state)
    results["kit"].update(state.feed_report)
    if shards_summary is not None:
        results["kit"]["shards"] = shards_summary
    paths = publish_reports(target_dir, results, state.records, request.plots) if target_dir else {}
    return BenchResult(results=results, records=state.records, out_dir=target_dir, paths=paths)


def publish_reports(out_dir: Path, results: dict[str, Any], records: list[dict[str, Any]],
                    plots: bool) -> dict[str, Path]:
    """`write_reports` into a hidden folder inside `out_dir`, then each file renamed into place, results.json last:
    an interruption or a failure while writing leaves no report that looks whole."""
    from validator_sim.reports import write_reports

    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=out_dir))
    try:
        written = write_reports(staging, results, records, plots)
        paths = {}
        for kind, path in sorted(written.items(), key=lambda item: item[0] == "results"):
            paths[kind] = out_dir / path.name
            os.replace(path, paths[kind])
        return paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _score(state: RunState, session: ModelSession, on_progress: Callable[[int, int], None] | None,
           link: ShardLink | None, ready: Callable[[], None] = lambda: None) -> ShardReport | None:
    """Run the overlapped pipeline over every plan, filling `state`; Ctrl-C marks it incomplete.

    `ready` runs once the first decodes are under way and before the first batch: what it raises (a model that
    failed to load, Ctrl-C while it loads) ends the run with nothing scored and is raised from here.

    In a shard (`link` given), the batches of this process's share are decoded and inferred but not
    scored: their outcomes come back in a ShardReport for rank 0 to replay, and `state` is left as it was.
    """
    model_io, profile, shard = state.model_io, state.profile, state.shard

    def prepare(payload: bytes | Path) -> np.ndarray | DecodeError:
        # One FFmpeg thread per clip: the parallelism comes from the decode workers.
        return prepare_sample(payload, model_io, profile, state.frame_rate, decode_threads=1)

    total = sum(len(p.indices) for p in state.plans)
    done = 0
    failed_batches: dict[str, int] = {}
    outcomes: list[BatchOutcome] = []
    # A shard's own reading of its batches (which samples decoded, which datasets decord lost) decides what it
    # sends to the model; rank 0's replay redoes that reading over every shard's batches, in plan order.
    local = state if link is None else replace(state, skipped={}, lost_datasets={}, validator_treatment=[], errors=[],
                                               timings=StageTimings())
    stop = threading.Event()
    batches: queue.Queue = queue.Queue(maxsize=prefetch_depth(model_io, state.batch_size))
    timings = local.timings
    feed = SampleFeed(prepare, cores=state.cores, decode_workers=state.decode_workers, cache=state.pixel_cache,
                      timings=timings, recipe=pixel_recipe(prepare_sample, profile, model_io.modality, model_io.height, model_io.width,
                                          model_io.frames, state.frame_rate))
    pool = ThreadPoolExecutor(max_workers=feed.max_workers, thread_name_prefix="sim-decode")
    producer = threading.Thread(target=_produce, name="sim-producer", daemon=True,
                                args=(state.plans, state.batch_size, pool, batches, stop, feed.prepare, shard))
    plan_index = {id(plan): i for i, plan in enumerate(state.plans)}
    frontier: int | None = None  # the batch in hand, until it is finished
    last_done: int | None = None  # the last batch of this shard's that was finished
    wall_start = time.perf_counter()
    producer.start()
    try:
        with timings.measure("model_load_wait") if session.loads_in_background else nullcontext():
            ready()
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        producer.join(timeout=5)
        raise
    try:
        while True:
            with timings.measure("input_wait"):
                item = batches.get()
            if item is _END:
                break
            if item[0] == "crash":
                raise item[1]
            if item[0] == "dataset-error":
                _, number, plan, message = item
                outcome = BatchOutcome(number, plan_index[id(plan)], dataset_error=message)
                if link is None:
                    _apply_outcome(state, outcome, failed_batches)
                else:
                    outcomes.append(outcome)
                continue
            number, plan, pending = item
            frontier = number
            with timings.measure("input_wait"):  # the batch's last decodes may still be running
                prepared = [(key, future.result()) for key, future in pending]
            with timings.measure("batch_assembly"):
                keys, arrays = _collect_batch(local, plan, prepared)
                batch = np.stack(arrays) if arrays else None
            inference = None
            if batch is not None:
                inference = _run_session(session, batch)
                feed.observe_inference(inference.elapsed_s if inference.failure is None else 0.0, len(arrays))
            if link is None:
                if keys:
                    assert inference is not None
                    _record_inference(state, plan, keys, inference, failed_batches)
            else:
                marks = tuple((key, p.reason, p.shape if isinstance(p, DecordChannelClip) else None)
                              if isinstance(p, DecodeError) else (key, None, None) for key, p in prepared)
                outcomes.append(BatchOutcome(number, plan_index[id(plan)], marks, inference))
                if inference is not None and inference.failure is not None and \
                        profile.on_batch_failure[plan.dataset.modality] == "invalidate_run":
                    frontier = None
                    break  # rank 0's replay ends the run here: nothing after this batch counts
            frontier, last_done = None, number
            done += len(pending)
            shown = link.progress(done, total) if link is not None else done
            if on_progress:
                on_progress(shown, total)
    except KeyboardInterrupt:
        state.completed = False
        if link is None:
            state.errors.append(f"{INTERRUPTED} {done} of {total} samples: the results cover only those")
        elif frontier is None:  # between batches: the next one of this shard's is the first it did not finish
            frontier = last_done + shard.count if last_done is not None else shard.index  # type: ignore[union-attr]
    except RunInvalidated:
        state.errors.append(f"run stopped at the first inference failure: {state.invalidated}")
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        producer.join(timeout=5)
        state.feed_report = feed.report()
        state.wall_s = time.perf_counter() - wall_start
        timings.observe("wall", state.wall_s)
        state.finished_at = datetime.now(timezone.utc)
    if link is None:
        _note_failed_batches(state, failed_batches)
        return None
    assert shard is not None
    if state.completed:
        frontier = None
    digest = tuple((p.dataset.name, len(p.listing.keys) if p.listing else 0, len(p.indices),
                    zlib.crc32(np.asarray(p.indices, dtype=np.int64).tobytes())) for p in state.plans)
    return ShardReport(shard, outcomes, frontier, digest, timings.snapshot(), state.wall_s, done)


def replay_shards(state: RunState, reports: list[ShardReport]) -> list[dict[str, Any]]:
    """Rank 0: every shard's batch outcomes, in plan order, through the single-process reading and scoring.

    Stops where the run stopped: at the first batch some interrupted shard did not finish (the run is then
    incomplete, as an interrupted single process is), or at a failure that voids the run. Returns what
    each shard did, for results["kit"]["shards"].
    """
    first = reports[0]
    for report in reports[1:]:
        if report.plan_digest != first.plan_digest:
            theirs = ", ".join(f"{name} {chosen}/{available}" for name, available, chosen, _ in report.plan_digest)
            raise InputError(f"{report.shard.label()} chose other samples than shard 1 ({theirs})",
                             "every machine needs the same datasets at the paths given, and the same --seed")
    frontiers = [r.frontier for r in reports if r.frontier is not None]
    end = min(frontiers) if frontiers else None
    state.completed = end is None
    state.records, state.skipped, state.lost_datasets = [], {}, {}
    state.timings = StageTimings()
    failed_batches: dict[str, int] = {}
    outcomes = sorted((o for r in reports for o in r.outcomes), key=lambda o: (o.number, o.dataset_error is None))
    try:
        for outcome in outcomes:
            if end is not None and outcome.number >= end:
                break
            _apply_outcome(state, outcome, failed_batches)
    except RunInvalidated:
        state.errors.append(f"run stopped at the first inference failure: {state.invalidated}")
    if end is not None:
        handled = len(state.records) + sum(len(v) for v in state.skipped.values())
        total = sum(len(p.indices) for p in state.plans)
        state.errors.append(f"{INTERRUPTED} {handled} of {total} samples: the results cover only those")
    _note_failed_batches(state, failed_batches)
    # Each shard's own stages (decoding, waiting, batch assembly) add up; the run took as long as its slowest shard.
    state.wall_s = max(r.wall_s for r in reports)
    for report in reports:
        state.timings.absorb(report.timings, skip=("wall",))
    state.timings.observe("wall", state.wall_s)
    return [{"shard": r.shard.index, "of": r.shard.count, "samples": r.samples, "wall_seconds": r.wall_s,
             "finished": r.frontier is None} for r in reports]


def _apply_outcome(state: RunState, outcome: BatchOutcome, failed_batches: dict[str, int]) -> None:
    """One numbered batch into `state`, exactly as the single-process loop takes it in."""
    plan = state.plans[outcome.plan_index]
    if outcome.dataset_error is not None:
        state.errors.append(f"{plan.dataset.name}: reading stopped early ({outcome.dataset_error})")
        return
    prepared: list[tuple[str, Any]] = [
        (key, None if reason is None else DecordChannelClip(shape) if shape is not None else DecodeError(reason))
        for key, reason, shape in outcome.marks]
    keys, _ = _collect_batch(state, plan, prepared)
    if keys:
        assert outcome.inference is not None, "a shard skipped a batch that the plan scores"
        _record_inference(state, plan, keys, outcome.inference, failed_batches)


def _note_failed_batches(state: RunState, failed_batches: dict[str, int]) -> None:
    """What the era's evaluator did with the batches that failed, per dataset."""
    profile = state.profile
    for name, count in failed_batches.items():
        dataset = next(p.dataset for p in state.plans if p.dataset.name == name)
        if profile.on_batch_failure[dataset.modality] == "invalidate_run":
            state.validator_treatment.append(
                f"{name}: a batch failed in the model's forward; under {profile.name} the evaluator declares the whole "
                "run unscorable, so this submission would score nothing")
        elif profile.on_batch_failure[dataset.modality] == "abort_dataset":
            state.validator_treatment.append(
                f"{name}: {count} batch(es) failed in session.run; under {profile.name} the validator aborted the "
                f"whole {dataset.modality} dataset at its first failure, so samples after it were never scored")
        else:
            state.validator_treatment.append(
                f"{name}: {count} batch(es) failed in session.run; under {profile.name} the validator recorded them "
                "as error rows and went on, as here")


def _collect_batch(state: RunState, plan: DatasetPlan,
                   prepared_all: list[tuple[str, np.ndarray | DecodeError]]) -> tuple[list[str], list]:
    """The batch's decoded samples; decode failures are counted, and a dataset the era's evaluator lost is skipped."""
    name = plan.dataset.name
    keys, arrays = [], []
    odd = next((p for _, p in prepared_all if isinstance(p, DecordChannelClip)), None)
    if odd is not None and name not in state.lost_datasets:
        state.lost_datasets[name] = (f"lost with the rest of {name}: a clip in its batch decoded to "
                                     f"{odd.reason.split()[2]} frames under decord")
        state.validator_treatment.append(
            f"{name}: decord 0.6.0 returned {odd.reason.split()[2]} frames for a clip; the ONNX-era evaluator stacks "
            "each batch outside its error handling, so that batch and every later one of this dataset were never scored")
    for key, prepared in prepared_all:
        if isinstance(prepared, DecordChannelClip):
            state.skipped.setdefault(name, []).append((key, prepared.reason))
        elif name in state.lost_datasets:
            state.skipped.setdefault(name, []).append((key, state.lost_datasets[name]))
        elif isinstance(prepared, DecodeError):
            state.skipped.setdefault(name, []).append((key, prepared.reason))
        else:
            keys.append(key)
            arrays.append(prepared)
    return keys, arrays


def _frame_rate_for(profile: Profile, asked: float | None, model_rate: float | None, warnings: list[str]) -> float | None:
    """The frame rate clips are sampled at: `--frame-rate`, else the bundle's own `preprocessing.frame_rate`."""
    if asked is not None and not (math.isfinite(asked) and asked > 0):
        raise UsageError(f"--frame-rate must be a positive number, got {asked}", "pass e.g. --frame-rate 8")
    if model_rate is None:
        return asked
    if not profile.frame_rate_stepping:
        warnings.append(f"the bundle asks for frame_rate {model_rate:g}; the {profile.name} evaluator took consecutive "
                        "frames, as here")
        return None
    if asked is not None and asked != model_rate:
        warnings.append(f"--frame-rate {asked:g} overrides the bundle's frame_rate {model_rate:g}; the evaluator "
                        "uses the bundle's")
        return asked
    return model_rate


def _run_session(session: ModelSession, batch: np.ndarray) -> Inference:
    """One session.run, timed; a failure becomes its one line (onnxruntime and torch raise their own types)."""
    started = time.perf_counter()
    try:
        logits = session.run(batch)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return Inference(None, message, time.perf_counter() - started)
    return Inference(logits, None, time.perf_counter() - started)


def _record_inference(state: RunState, plan: DatasetPlan, keys: list[str], inference: Inference,
                      failed_batches: dict[str, int]) -> None:
    """One batch's inference into records: scored rows on success; on failure error rows (and a count), or the end
    of the run."""
    dataset = plan.dataset
    base = {"dataset": dataset.name, "media_type": dataset.media_type,
            "label": binary_label(dataset.media_type, state.rendered),
            "class_label": class_label(dataset.media_type, state.rendered)}
    batch_ms = inference.elapsed_s * 1000
    if inference.failure is not None:
        message = inference.failure
        if dataset.name not in failed_batches:
            state.errors.append(f"{dataset.name}: session.run failed: {message}")
        failed_batches[dataset.name] = failed_batches.get(dataset.name, 0) + 1
        for key in keys:
            state.records.append({**base, "sample": key, "status": "error", "predicted": None, "probs": None,
                                  "p_ai": None, "correct": None, "class_probs": None, "inference_ms": None,
                                  "batch_inference_ms": batch_ms, "error": message, "nan": False})
        if state.profile.on_batch_failure[dataset.modality] == "invalidate_run":
            state.invalidated = (f"inference failed on {dataset.name}/{keys[0]}"
                                 f"{f' (and {len(keys) - 1} more in its batch)' if len(keys) > 1 else ''}: {message}")
            raise RunInvalidated(state.invalidated)
        return
    assert inference.logits is not None
    state.inference_s += inference.elapsed_s
    state.timings.observe("inference", inference.elapsed_s)
    per_sample_ms = batch_ms / len(keys)
    with state.timings.measure("scoring"):
        for key, row in zip(keys, inference.logits):
            state.records.append({**base, "sample": key, **score_row(row, state, base["label"], base["class_label"]),
                                  "inference_ms": per_sample_ms, "batch_inference_ms": batch_ms, "error": None})


def raise_if_unusable(result: BenchResult) -> None:
    """An InputError when nothing at all could be scored (every sample skipped or failed)."""
    scored = result.results["results"]["total_samples"]
    if scored == 0 and result.completed:
        raise InputError("no sample could be scored", "see the skipped counts and errors in the report")
