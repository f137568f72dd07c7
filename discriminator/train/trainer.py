"""`kit train` and `kit calibrate` as library calls: fit a detector on local data, calibrate it, save a checkpoint.

Training runs through the same `Detector` wrapper that `kit build` exports, fed the
same uint8 pixels the validator sends (`discriminator.train.data`), so what is
learnt is what gets scored. Labels are the three classes the network scores
(real / synthetic / semisynthetic); a 2-class `[real, ai]` head learns semisynthetic
as AI. Two modes, as miners use them:

* `finetune` — every parameter trains, or only the last N blocks and the head
  (`train_last`). AdamW; the learning rate warms up linearly for one epoch and then
  decays on a cosine; random horizontal flips of the uint8 batch; an exponential
  moving average (EMA) of the weights, whose horizon is about one epoch, is what
  gets validated and kept (it smooths the epoch-to-epoch jumps of a small
  validation split).
* `probe` — the backbone is frozen; the input of the final `nn.Linear` (the pooled
  embedding) is computed once per sample with a forward hook, and only that head is
  fitted on the cached features. This is the base-model / embeddings route: a base
  (headless) Hugging Face model gets a linear head on its pooled embedding.

With `robustness_augment` P > 0, a seeded P-share of each training dataset's samples
is also put through the evaluator's robustness chain once, at load, and trained on as
extra samples with the same labels (`data.robustness_copies`); validation stays clean,
as the network's base pass is.

Each epoch is scored on the validation split with the validator's metrics under
both scorings; the weights with the best validation sn34 of the selection scoring
(the profile's: multiclass under `current`, binary under `onnx-2026-02`; or
`select_by`) are kept, ties going to the lower loss. Every new best is written to
the checkpoint folder at once, file by file with atomic renames, so a crash or
Ctrl-C leaves the best checkpoint so far. At the end a temperature is fitted on the
validation logits for the Brier of the selection scoring (`calibration.py`).

Under `torchrun` (PyTorch DDP) each process trains on its shard of every global
batch (`DistributedSampler`); gradients are averaged by DDP itself, and rank 0
validates, selects, calibrates and writes. The same global batches and flips are
drawn for any number of processes, so one process and N processes follow the same
recipe (batch-norm statistics are per process, as in any DDP run).
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DistributedSampler

from discriminator import __version__
from discriminator.build import BuildRequest, default_name, make_spec
from discriminator.errors import KitError, OutputExistsError, UsageError
from discriminator.registry import resolve_backbone
from discriminator.sources.checkpoint import CHECKPOINT_FILE, WEIGHTS_FILE, is_checkpoint_dir, read_checkpoint, write_checkpoint
from discriminator.spec import DetectorSpec
from discriminator.train.calibration import SCORINGS, CalibrationReport, ScoreCard, calibrate_logits, profile_scoring, score_logits
from discriminator.train.data import (
    LoadedSplit,
    check_media_type_folders,
    check_robustness_fraction,
    load_split,
    require_both_classes,
    robustness_copies,
)
from discriminator.wrapper import Backbone, Detector
from validator_sim.bundle_runtime import keep_freed_memory
from validator_sim.profiles import TRAIN_PROFILE, get_profile

MODES = ("finetune", "probe")
TASKS = ("auto", "classify")
DEFAULT_OUT_DIR = Path("runs")


@dataclass(frozen=True)
class ModeDefaults:
    """What a mode trains with unless told otherwise."""

    epochs: int
    learning_rate: float
    batch_size: dict[str, int]
    description: str


#: Per mode: epochs, learning rate and batch size (by modality) a plain `kit train` uses.
MODE_DEFAULTS = {
    "finetune": ModeDefaults(10, 2e-3, {"image": 32, "video": 8}, "train every parameter through the wrapper"),
    "probe": ModeDefaults(60, 1e-2, {"image": 64, "video": 64}, "freeze the backbone, fit the final linear head on cached embeddings"),
}
WEIGHT_DECAY = 1e-4
#: Samples per forward pass when computing logits or features without gradients.
INFERENCE_BATCH = 16


@dataclass
class TrainRequest:
    """Everything `kit train` takes; the CLI fills it from flags, `make demo` from a preset."""

    modality: str
    data: Path
    val: Path
    model: str | None = None
    mode: str = "finetune"
    epochs: int | None = None
    #: Global batch: split evenly over the processes under torchrun.
    batch_size: int | None = None
    learning_rate: float | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    #: Frames the backbone looks at (video): the incoming T is mapped onto these. Default: the model's.
    native_frames: int | None = None
    seed: int = 0
    out: Path | None = None
    force: bool = False
    calibrate: bool = True
    augment: bool = True
    #: Passed to the source factory, e.g. {"channels": [8, 16, 32, 64]} for the examples.
    source_options: dict[str, Any] = field(default_factory=dict)
    profile: str = TRAIN_PROFILE
    show_progress: bool = True
    #: "classify" gives a base (headless) Hugging Face model a linear head on its pooled embedding.
    task: str = "auto"
    #: Fine-tune only the last N blocks (and everything after them, the head included).
    train_last: int | None = None
    #: The head's classes, e.g. ("real", "ai"); default: the model's own.
    class_names: tuple[str, ...] | None = None
    #: "binary" or "multiclass": the sn34 that picks the epoch and the Brier the temperature minimises.
    select_by: str | None = None
    #: Epochs of linear learning-rate warm-up before the cosine decay (finetune).
    warmup_epochs: float = 1.0
    #: Validate and keep an exponential moving average of the weights (finetune).
    ema: bool = True
    #: Share (0–1) of each training dataset's samples also seen through the evaluator's robustness chain,
    #: as extra samples computed once at load (`discriminator.train.data.robustness_copies`); 0: none.
    robustness_augment: float = 0.0


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's training loss and validation scores (uncalibrated, T = 1); epoch 0 is the starting point."""

    epoch: int
    train_loss: float | None
    val_loss: float
    val_accuracy: float
    val_brier: float
    val_sn34: float
    val_multiclass_sn34: float
    seconds: float

    def sn34_for(self, scoring: str) -> float:
        return self.val_multiclass_sn34 if scoring == "multiclass" else self.val_sn34


@dataclass
class TrainResult:
    """What `train_detector` produced."""

    checkpoint: Path
    spec: DetectorSpec
    mode: str
    epochs: int
    history: list[EpochRecord]
    best_epoch: int
    #: The scoring that selected the epoch and fitted the temperature.
    scoring: str
    #: Validation metrics of the kept weights at T = 1 (None when nothing was calibrated: see `calibration`).
    calibration: CalibrationReport | None
    final: ScoreCard
    #: Decoded training samples, not counting the robustness copies.
    train_samples: int
    val_samples: int
    dropped: dict[str, dict[str, int]]
    load_seconds: float
    train_seconds: float
    total_seconds: float
    #: Processes that trained (torchrun's WORLD_SIZE; 1 without it).
    processes: int = 1
    #: "12 of 12 blocks" style note when `train_last` froze the rest.
    trained_part: str = "all parameters"
    #: Robustness copies trained on beside the decoded samples (`robustness_augment`).
    robustness_copies: int = 0


class TrainingInterrupted(KitError):
    """Ctrl-C or a crash mid-run; says where the best checkpoint so far is (if any epoch improved)."""

    exit_code = 130


@dataclass(frozen=True)
class _World:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _join_world() -> _World:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPUs, gloo on CPUs); pick this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if size <= 1:
        return _World(device=device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _World(dist.get_rank(), dist.get_world_size(), device)


@dataclass
class _Prepared:
    """A resolved source, wrapped for training, and what its checkpoint must record."""

    backbone: Backbone
    detector: Detector
    spec: DetectorSpec
    source: str
    source_options: dict[str, Any]


def _progress(show: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[note]}"), console=Console(stderr=True), transient=True, disable=not show)


def _prepare_model(modality: str, model: str, height: int | None, width: int | None, frames: int | None,
                   source_options: dict[str, Any], task: str = "auto",
                   class_names: tuple[str, ...] | None = None, native_frames: int | None = None) -> _Prepared:
    """Resolve `model` (a source or a kit checkpoint), build its spec and wrap it; temperature starts at 1."""
    if modality not in ("image", "video"):
        raise UsageError(f"modality must be image or video, got '{modality}'", "run `kit train image …` or `kit train video …`")
    if task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, got '{task}'", "use --task classify")
    options = dict(source_options)
    if is_checkpoint_dir(Path(model)):
        if source_options or class_names:
            raise UsageError("a checkpoint already records its model options and classes",
                             "drop --model-option / --classes when --model is a checkpoint")
        record = read_checkpoint(Path(model))
        source, options = record["source"], dict(record.get("source_options") or {})
    else:
        source = model
        if class_names and model.startswith("hf:"):
            options.update(num_classes=len(class_names), class_names=tuple(class_names))
    backbone, defaults = resolve_backbone(model, modality, task=task, options=dict(options) if source == model else {})
    request = BuildRequest(modality=modality, model=model, name=default_name(source), height=height, width=width,
                           frames=frames, native_frames=native_frames, class_names=class_names)
    spec = make_spec(request, backbone, defaults)
    if spec.task != "classify":
        raise UsageError(f"{model} is a base model without a classification head",
                         "pass --task classify to train a 3-class linear head on its pooled embedding (with --mode probe or finetune)")
    _check_head_width(backbone.module, spec.num_classes, model)
    detector = Detector(backbone, spec.replace(temperature=1.0))
    return _Prepared(backbone, detector, spec, source, options)


def _check_head_width(module: nn.Module, num_classes: int, model: str) -> None:
    """Refuse a spec whose class count the module's final linear layer does not produce."""
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features != num_classes and not any(m.out_features == num_classes for m in linears):
        raise UsageError(f"{model} has a {linears[-1].out_features}-output head, not {num_classes}",
                         "drop --classes to train the model's own classes, or use a source whose head has that many")


def _batches(count: int, size: int) -> Iterator[torch.Tensor]:
    """Consecutive index batches (for inference)."""
    for start in range(0, count, size):
        yield torch.arange(start, min(start + size, count))


@torch.no_grad()
def predict_logits(detector: Detector, inputs: torch.Tensor, batch_size: int = INFERENCE_BATCH,
                   device: torch.device | None = None) -> torch.Tensor:
    """Logits `[N, K]` on the CPU of the detector in eval mode (temperature as the detector has it)."""
    detector.eval()
    device = device or next(detector.parameters()).device
    return torch.cat([detector(inputs[idx].to(device)).float().cpu() for idx in _batches(len(inputs), batch_size)])


def find_head(module: nn.Module, num_classes: int) -> nn.Linear:
    """The last `nn.Linear` with `num_classes` outputs: the classification head a probe fits."""
    heads = [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise UsageError(f"--mode probe needs a final nn.Linear with {num_classes} outputs, and this model has none",
                         "use --mode finetune")
    return heads[-1]


def model_blocks(module: nn.Module) -> list[nn.Module]:
    """The model's repeated blocks: the children (with parameters) of its longest `nn.ModuleList`/`nn.Sequential`
    (transformer layers, CNN stages); the last one found wins a tie, so nested heads do not."""
    best: list[nn.Module] = []
    for candidate in module.modules():
        if isinstance(candidate, (nn.ModuleList, nn.Sequential)):
            children = [c for c in candidate.children() if any(True for _ in c.parameters())]
            if len(children) >= len(best) and len(children) > 1:
                best = children
    return best


def freeze_all_but_last(module: nn.Module, head: nn.Linear, blocks: int) -> str:
    """Train only the last `blocks` blocks, every parameter registered after them, and the head; say what trains."""
    found = model_blocks(module)
    if not found:
        raise UsageError("--train-last needs a model with repeated blocks (an nn.ModuleList or nn.Sequential), and this one has none",
                         "drop --train-last to fine-tune every parameter, or use --mode probe")
    if not 1 <= blocks <= len(found):
        raise UsageError(f"--train-last must be between 1 and {len(found)} (this model has {len(found)} blocks), got {blocks}",
                         f"pass --train-last {min(2, len(found))}, or drop it to train everything")
    first_trained = {id(p) for p in found[-blocks].parameters()}
    training = False
    for parameter in module.parameters():
        training = training or id(parameter) in first_trained
        parameter.requires_grad_(training)
    for parameter in head.parameters():
        parameter.requires_grad_(True)
    total = sum(p.numel() for p in module.parameters())
    trained = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return f"last {blocks} of {len(found)} blocks + head ({trained:,} of {total:,} parameters)"


@torch.no_grad()
def extract_head_inputs(detector: Detector, head: nn.Linear, inputs: torch.Tensor,
                        on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """The head's input per sample `[N, D]`, averaged over frames when the wrapper averages per-frame logits."""
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0].detach().float().cpu()))
    detector.eval()
    device = next(detector.parameters()).device
    features = []
    try:
        for idx in _batches(len(inputs), INFERENCE_BATCH):
            captured.clear()
            detector(inputs[idx].to(device))
            if len(captured) != 1:
                raise UsageError(f"the head ran {len(captured)} times in one forward pass", "use --mode finetune")
            features.append(captured[0].reshape(len(idx), -1, head.in_features).mean(dim=1))
            if on_batch:
                on_batch(len(idx))
    finally:
        handle.remove()
    return torch.cat(features)


def _epoch_record(epoch: int, train_loss: float | None, logits: torch.Tensor, split: LoadedSplit, profile: str,
                  seconds: float) -> EpochRecord:
    val_loss = float(F.cross_entropy(logits, split.labels))
    card = score_logits(logits.numpy(), split.media_labels, 1.0, profile)
    return EpochRecord(epoch, train_loss, val_loss, card.accuracy, card.brier, card.sn34, card.multiclass_sn34, seconds)


def _better(record: EpochRecord, best: EpochRecord, scoring: str) -> bool:
    return (record.sn34_for(scoring), -record.val_loss) > (best.sn34_for(scoring), -best.val_loss)


def _prepare_out(out: Path, force: bool) -> bool:
    """Refuse an unusable --out before any work: a file, an existing checkpoint without force, or a folder
    that cannot be written. Returns whether the folder was created here."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder", "choose another --out")
    if (out / CHECKPOINT_FILE).exists() and not force:
        raise OutputExistsError(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".kit-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write the checkpoint to {out}: {exc.strerror or exc}",
                         "choose an --out folder you can write to") from None
    return created


def _save_atomically(out: Path, module: nn.Module, source: str, modality: str, source_options: dict[str, Any],
                     spec_fields: dict[str, Any], extra: dict[str, Any]) -> None:
    """Write the checkpoint into a hidden folder inside `out`, then rename its files into place, weights first:
    `checkpoint.json` only ever sits beside complete weights."""
    with tempfile.TemporaryDirectory(dir=out, prefix=".kit-partial-") as staging:
        write_checkpoint(Path(staging), module, source, modality, source_options, spec_fields, extra=extra)
        os.replace(Path(staging) / WEIGHTS_FILE, out / WEIGHTS_FILE)
        os.replace(Path(staging) / CHECKPOINT_FILE, out / CHECKPOINT_FILE)


def _spec_fields(spec: DetectorSpec) -> dict[str, Any]:
    fields = {"height": spec.height, "width": spec.width, "class_names": list(spec.class_names),
              "mean": list(spec.mean), "std": list(spec.std), "temperature": spec.temperature}
    if spec.modality == "video":
        fields.update(frames=spec.frames, native_frames=spec.native_frames)
    return fields


class _CheckpointWriter:
    """Writes the best weights so far (uncalibrated, T = 1) during training and the calibrated checkpoint at the end."""

    def __init__(self, out: Path, prepared: _Prepared, training: dict[str, Any], model: str):
        self.out, self.prepared, self.training, self.model = out, prepared, training, model
        self.saved: EpochRecord | None = None

    def save(self, module: nn.Module, best: EpochRecord, history: list[EpochRecord],
             spec: DetectorSpec | None = None, calibration: CalibrationReport | None = None) -> None:
        """Without `spec`, a mid-run save: temperature 1 and `complete: false` in the record."""
        complete = spec is not None
        spec = spec or self.prepared.spec.replace(temperature=1.0)
        training = {**self.training, "best_epoch": best.epoch, "history": [asdict(r) for r in history], "complete": complete}
        _save_atomically(self.out, module, self.prepared.source, spec.modality, self.prepared.source_options, _spec_fields(spec),
                         extra={"kit_version": __version__, "trained_from": self.model, "task": self.training["task"],
                                "training": training, "calibration": calibration.to_dict() if calibration else None})
        self.saved = best


def train_detector(request: TrainRequest, on_epoch: Callable[[EpochRecord], None] | None = None,
                   on_step: Callable[[str], None] | None = None) -> TrainResult | None:
    """Load both splits, train, keep the best epoch, calibrate, write the checkpoint (see the module docstring).

    Under torchrun every process calls this; rank 0 returns the result, the others None.
    """
    started = time.perf_counter()
    if request.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got '{request.mode}'", "use --mode finetune or --mode probe")
    defaults = MODE_DEFAULTS[request.mode]
    epochs = request.epochs if request.epochs is not None else defaults.epochs
    batch_size = (request.batch_size if request.batch_size is not None  # a 0 is refused below, not replaced
                  else defaults.batch_size[request.modality if request.modality in ("image", "video") else "image"])
    learning_rate = request.learning_rate if request.learning_rate is not None else defaults.learning_rate
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--lr", learning_rate)):
        if not value > 0:
            raise UsageError(f"{name} must be positive, got {value}", f"pass a positive {name}")
    check_robustness_fraction(request.robustness_augment)
    if request.train_last is not None and request.mode != "finetune":
        raise UsageError("--train-last applies to --mode finetune", "drop --train-last, or use --mode finetune")
    scoring = request.select_by or profile_scoring(request.profile)
    if scoring not in SCORINGS:
        raise UsageError(f"--select-by must be one of {', '.join(SCORINGS)}, got '{scoring}'", "use --select-by multiclass or binary")
    get_profile(request.profile)
    model = request.model or f"example-{request.modality}"
    out = Path(request.out) if request.out else DEFAULT_OUT_DIR / request.modality
    world = _join_world()
    if world.distributed and request.mode == "probe":
        raise UsageError("--mode probe runs in one process (it fits one linear layer on cached features)", "run it without torchrun")
    if world.distributed and batch_size % world.size:
        raise UsageError(f"--batch-size {batch_size} does not split evenly over {world.size} processes",
                         f"pass a multiple of {world.size}: --batch-size is the global batch")
    created = _prepare_out(out, request.force) if world.main else False
    keep_freed_memory()  # ~1.25× per training step: torch's buffers reuse pages instead of faulting them in anew
    step = (on_step or (lambda _message: None)) if world.main else (lambda _message: None)
    try:
        for directory in (request.data, request.val):
            check_media_type_folders(Path(directory))
        return _train(request, model, out, world, epochs, batch_size, learning_rate, scoring, started,
                      on_epoch if world.main else None, step)
    finally:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing was written: leave no empty folder behind


def _train(request: TrainRequest, model: str, out: Path, world: _World, epochs: int, batch_size: int, learning_rate: float,
           scoring: str, started: float, on_epoch: Callable[[EpochRecord], None] | None,
           step: Callable[[str], None]) -> TrainResult | None:
    torch.manual_seed(request.seed)
    task = "classify" if request.mode == "probe" and request.task == "auto" else request.task
    prepared = _prepare_model(request.modality, model, request.height, request.width, request.frames, request.source_options,
                              task=task, class_names=request.class_names, native_frames=request.native_frames)
    spec = prepared.spec
    step(f"{model}: {spec.modality} {spec.height}×{spec.width}" + (f", T={spec.frames}" if spec.frames else "")
         + f", classes {'/'.join(spec.class_names)}, {request.mode}, {epochs} epochs, epoch kept by {scoring} sn34"
         + (f", {world.size} processes" if world.distributed else ""))

    with _progress(request.show_progress and world.main) as progress:
        splits: dict[str, LoadedSplit] = {}
        for split_name, directory in (("train", request.data), ("val", request.val)):
            if split_name == "val" and not world.main:
                continue
            bar = progress.add_task(f"decoding {split_name}", total=None, note="")
            splits[split_name] = load_split(Path(directory), spec.modality, spec.height, spec.width, spec.frames,
                                            spec.class_names, request.profile,
                                            on_progress=lambda done, total, t=bar: progress.update(t, completed=done, total=total))
            require_both_classes(splits[split_name], directory, f"--{'data' if split_name == 'train' else 'val'}")
            progress.remove_task(bar)
        train, val = splits["train"], splits.get("val")
        decoded = len(train)
        if request.robustness_augment > 0:
            bar = progress.add_task("robustness copies of train", total=None, note="evaluator's chain, once")
            train = train + robustness_copies(train, request.robustness_augment, request.seed, spec.modality, spec.height,
                                              spec.width, spec.frames, spec.class_names, request.profile,
                                              on_progress=lambda done, total, t=bar: progress.update(t, completed=done, total=total))
            progress.remove_task(bar)
        copies = len(train) - decoded
        load_seconds = time.perf_counter() - started
        if val is not None:
            step(f"decoded {decoded} train" + (f" (+ {copies} robustness copies)" if request.robustness_augment > 0 else "")
                 + f" and {len(val)} validation samples in {load_seconds:.1f} s"
                 + "".join(f"; {name}: dropped {sum(d.values())}" for name, d in (("train", train.dropped), ("val", val.dropped)) if d))
        training = {"mode": request.mode, "task": task, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                    "weight_decay": WEIGHT_DECAY, "warmup_epochs": request.warmup_epochs, "ema": request.ema,
                    "train_last": request.train_last, "seed": request.seed, "processes": world.size,
                    # float sums over a different thread count round differently: part of what reproduces a run
                    "threads": torch.get_num_threads(),
                    "augment": request.augment and request.mode == "finetune",
                    "robustness_augment": request.robustness_augment, "robustness_copies": copies, "profile": request.profile,
                    "select_by": scoring, "train_data": str(request.data), "val_data": str(request.val),
                    "train_samples": decoded, "val_samples": len(val) if val is not None else None,
                    "dropped": {"train": train.dropped, "val": val.dropped if val is not None else {}}}
        trained_part = "the head only (backbone frozen)" if request.mode == "probe" else "all parameters"
        if request.train_last is not None:
            trained_part = freeze_all_but_last(prepared.backbone.module, find_head(prepared.backbone.module, spec.num_classes),
                                               request.train_last)
        step(f"training {trained_part}")
        writer = _CheckpointWriter(out, prepared, training, model)
        train_started = time.perf_counter()
        run = _run_probe if request.mode == "probe" else _run_finetune
        try:
            outcome = run(prepared, train, val, epochs, batch_size, learning_rate, request, scoring, world, writer,
                          progress, on_epoch)
        except KeyboardInterrupt:
            raise _interrupted(writer, out, request, "interrupted") from None
        except KitError:
            raise
        except Exception as exc:
            if writer.saved is None:
                raise
            raise _interrupted(writer, out, request, f"training failed ({type(exc).__name__}: {exc})") from exc
        train_seconds = time.perf_counter() - train_started
    if outcome is None:
        return None
    history, best, val_logits = outcome
    assert val is not None
    calibration = calibrate_logits(val_logits.numpy(), val.media_labels, 1.0, request.profile, scoring) if request.calibrate else None
    temperature = calibration.temperature if calibration else 1.0
    final = calibration.after if calibration else score_logits(val_logits.numpy(), val.media_labels, 1.0, request.profile)
    if calibration:
        step(f"calibrated for {scoring} Brier: T = {temperature:.3f}, validation {scoring} Brier "
             f"{calibration.before.brier_for(scoring):.4f} → {calibration.after.brier_for(scoring):.4f}, "
             f"sn34 binary {calibration.before.sn34:.4f} → {calibration.after.sn34:.4f}, "
             f"multiclass {calibration.before.multiclass_sn34:.4f} → {calibration.after.multiclass_sn34:.4f}")
    spec = spec.replace(temperature=temperature)
    writer.training["seconds"] = round(train_seconds, 1)
    writer.save(prepared.backbone.module, best, history, spec, calibration)
    return TrainResult(checkpoint=out, spec=spec, mode=request.mode, epochs=epochs, history=history, best_epoch=best.epoch,
                       scoring=scoring, calibration=calibration, final=final, train_samples=training["train_samples"],
                       val_samples=len(val), dropped=training["dropped"], load_seconds=load_seconds, train_seconds=train_seconds,
                       total_seconds=time.perf_counter() - started, processes=world.size, trained_part=trained_part,
                       robustness_copies=training["robustness_copies"])


def _interrupted(writer: _CheckpointWriter, out: Path, request: TrainRequest, what: str) -> TrainingInterrupted:
    if writer.saved is None:
        return TrainingInterrupted(f"{what} before any epoch improved on the starting weights: nothing was saved in {out}",
                                   "rerun `kit train`; the first epoch's result is saved as soon as it is validated")
    best = writer.saved
    return TrainingInterrupted(
        f"{what}; the best checkpoint so far (epoch {best.epoch}, val sn34 binary {best.val_sn34:.4f}, "
        f"multiclass {best.val_multiclass_sn34:.4f}, not calibrated) is in {out}",
        f"use it as is (`kit build {request.modality} --model {out}`), calibrate it first "
        f"(`kit calibrate {out} --data {request.val} --force`), or continue from it with `--model {out}`")


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the full learning rate over `warmup_steps`, then cosine decay to 0 at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def ema_decay(steps_per_epoch: int) -> float:
    """EMA decay whose averaging horizon (1 / (1 − decay) steps) is about one epoch, within [0.9, 0.999]."""
    return min(0.999, max(0.9, 1.0 - 1.0 / steps_per_epoch))


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int, world: _World) -> list[torch.Tensor]:
    """This process's share of each global batch of one epoch.

    `DistributedSampler` shuffles with seed + epoch and deals the permutation out
    rank by rank; cutting each process's share into batch_size / world pieces makes
    global batch k the same samples for any number of processes. The short last
    batch is dropped (batch norm cannot train on one sample)."""
    sampler = DistributedSampler(range(count), num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    indices = torch.tensor(list(sampler), dtype=torch.int64)
    share = batch_size // world.size
    usable = len(indices) - len(indices) % share if len(indices) >= share else len(indices)
    return [indices[start:start + share] for start in range(0, usable, share)]


def _run_finetune(prepared: _Prepared, train: LoadedSplit, val: LoadedSplit | None, epochs: int, batch_size: int,
                  learning_rate: float, request: TrainRequest, scoring: str, world: _World, writer: _CheckpointWriter,
                  progress: Progress, on_epoch: Callable[[EpochRecord], None] | None
                  ) -> tuple[list[EpochRecord], EpochRecord, torch.Tensor] | None:
    detector = prepared.detector.to(world.device)
    trainable = [p for p in detector.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = max(1, len(train) // batch_size)
    schedule = warmup_cosine(optimizer, round(request.warmup_epochs * steps_per_epoch), epochs * steps_per_epoch)
    averaged = (AveragedModel(detector, multi_avg_fn=get_ema_multi_avg_fn(ema_decay(steps_per_epoch)), use_buffers=True)
                if request.ema else None)
    evaluated = averaged.module if averaged is not None else detector
    forward = DistributedDataParallel(detector) if world.distributed else detector
    history: list[EpochRecord] = []
    best = best_state = None
    if world.main:
        assert val is not None
        history.append(_epoch_record(0, None, predict_logits(detector, val.inputs), val, request.profile, 0.0))
        best, best_state = history[0], copy.deepcopy(detector.backbone.state_dict())
        if on_epoch:
            on_epoch(history[0])
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        bar = progress.add_task(f"epoch {epoch}/{epochs}", total=len(train) // world.size, note="")
        detector.train()
        flips = torch.rand(len(train), generator=torch.Generator().manual_seed(request.seed * 100_003 + epoch)) < 0.5
        total_loss, seen = 0.0, 0
        for idx in epoch_batches(len(train), batch_size, request.seed, epoch, world):
            x = train.inputs[idx]
            if request.augment:
                x = torch.where(flips[idx].view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
            loss = F.cross_entropy(forward(x.to(world.device)), train.labels[idx].to(world.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if averaged is not None:
                averaged.update_parameters(detector)
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            progress.update(bar, advance=len(idx), note=f"loss {total_loss / seen:.4f}")
        progress.remove_task(bar)
        if world.main:
            assert val is not None and best is not None
            logits = predict_logits(evaluated, val.inputs)
            record = _epoch_record(epoch, total_loss / max(seen, 1), logits, val, request.profile, time.perf_counter() - epoch_started)
            history.append(record)
            if _better(record, best, scoring):
                best, best_state = record, copy.deepcopy(evaluated.backbone.state_dict())
                writer.save(evaluated.backbone, best, history)
            if on_epoch:
                on_epoch(record)
        if world.distributed:
            dist.barrier()
    if not world.main:
        return None
    assert best is not None and best_state is not None and val is not None
    detector.backbone.load_state_dict(best_state)
    return history, best, predict_logits(detector, val.inputs)


def _run_probe(prepared: _Prepared, train: LoadedSplit, val: LoadedSplit | None, epochs: int, batch_size: int,
               learning_rate: float, request: TrainRequest, scoring: str, world: _World, writer: _CheckpointWriter,
               progress: Progress, on_epoch: Callable[[EpochRecord], None] | None
               ) -> tuple[list[EpochRecord], EpochRecord, torch.Tensor]:
    assert val is not None
    detector = prepared.detector.to(world.device)
    head = find_head(detector.backbone, prepared.spec.num_classes)
    features = {}
    for split_name, split in (("train", train), ("val", val)):
        bar = progress.add_task(f"embedding {split_name}", total=len(split), note="backbone frozen, once")
        features[split_name] = extract_head_inputs(detector, head, split.inputs, lambda n, t=bar: progress.advance(t, n))
        progress.remove_task(bar)
    detector.to("cpu")  # the head is fitted on the cached features
    with torch.no_grad():
        direct = predict_logits(detector, val.inputs[:INFERENCE_BATCH])
        through_head = head(features["val"][:INFERENCE_BATCH])
    if not torch.allclose(direct, through_head, atol=1e-4, rtol=1e-4):
        raise UsageError("--mode probe cannot split this model at its last linear layer (its logits are not head(embedding))",
                         "use --mode finetune")
    for parameter in detector.parameters():
        parameter.requires_grad_(False)
    for parameter in head.parameters():
        parameter.requires_grad_(True)
    generator = torch.Generator().manual_seed(request.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY)
    with torch.no_grad():
        history = [_epoch_record(0, None, head(features["val"]), val, request.profile, 0.0)]
    best, best_state = history[0], copy.deepcopy(head.state_dict())
    if on_epoch:
        on_epoch(history[0])
    bar = progress.add_task("fitting head", total=epochs, note="")
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        total_loss = 0.0
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(head(features["train"][idx]), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
        with torch.no_grad():
            logits = head(features["val"])
        record = _epoch_record(epoch, total_loss / len(train), logits, val, request.profile, time.perf_counter() - epoch_started)
        history.append(record)
        if _better(record, best, scoring):
            best, best_state = record, copy.deepcopy(head.state_dict())
            writer.save(detector.backbone, best, history)
        progress.update(bar, advance=1, note=f"val sn34 {record.sn34_for(scoring):.4f}")
        if on_epoch:
            on_epoch(record)
    progress.remove_task(bar)
    head.load_state_dict(best_state)
    with torch.no_grad():
        return history, best, head(features["val"])


@dataclass(frozen=True)
class CheckpointCalibration:
    """What `calibrate_checkpoint` wrote, and the validation metrics before (old T) and after (new T)."""

    checkpoint: Path
    report: CalibrationReport
    val_samples: int
    dropped: dict[str, int]


#: checkpoint.json keys `write_checkpoint` writes itself; everything else is carried over as is.
_CHECKPOINT_OWN_KEYS = ("source", "modality", "source_options", "spec", "weights_file")


def calibrate_checkpoint(checkpoint: Path, val: Path, out: Path | None = None, force: bool = False,
                         profile: str = TRAIN_PROFILE, show_progress: bool = True,
                         scoring: str | None = None) -> CheckpointCalibration:
    """Refit a checkpoint's temperature on `val` for `scoring`'s Brier (default: the profile's); rewrite it in
    place (needs `force`) or write a copy to `out`."""
    checkpoint = Path(checkpoint)
    if not is_checkpoint_dir(checkpoint):
        raise UsageError(f"{checkpoint} is not a kit checkpoint (no {CHECKPOINT_FILE})",
                         "point at a folder written by `kit train`")
    scoring = scoring or profile_scoring(profile)
    if scoring not in SCORINGS:
        raise UsageError(f"--select-by must be one of {', '.join(SCORINGS)}, got '{scoring}'", "use multiclass or binary")
    target = Path(out) if out else checkpoint
    if target.resolve() == checkpoint.resolve():
        if not force:
            raise OutputExistsError(checkpoint / CHECKPOINT_FILE)
    else:
        _prepare_out(target, force)
    record = read_checkpoint(checkpoint)
    prepared = _prepare_model(record["modality"], str(checkpoint), None, None, None, {})
    spec = prepared.spec
    with _progress(show_progress) as progress:
        bar = progress.add_task("decoding val", total=None, note="")
        split = load_split(Path(val), spec.modality, spec.height, spec.width, spec.frames, spec.class_names, profile,
                           on_progress=lambda done, total: progress.update(bar, completed=done, total=total))
        require_both_classes(split, val, "--data")
        progress.update(bar, description="scoring val")
        logits = predict_logits(prepared.detector, split.inputs)
    report = calibrate_logits(logits.numpy(), split.media_labels, spec.temperature, profile, scoring)
    extra = {key: value for key, value in record.items() if key not in _CHECKPOINT_OWN_KEYS}
    extra["calibration"] = {**report.to_dict(), "val_data": str(val)}
    _save_atomically(target, prepared.backbone.module, prepared.source, spec.modality, prepared.source_options,
                     {**record["spec"], "temperature": report.temperature}, extra=extra)
    return CheckpointCalibration(target, report, len(split), split.dropped)
