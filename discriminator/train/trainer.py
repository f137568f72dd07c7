"""`kit train` and `kit calibrate` as library calls: fit a detector on local data, calibrate it, save a checkpoint.

Training runs through the same `Detector` wrapper that `kit build` exports, fed the
same uint8 pixels the validator sends (`discriminator.train.data`), so what is
learnt is what gets scored. Two modes, as miners use them:

* `finetune` — every parameter trains (AdamW, cosine learning-rate decay, random
  horizontal flips of the uint8 batch).
* `probe` — the backbone is frozen; the input of the final `nn.Linear` (the pooled
  embedding) is computed once per sample with a forward hook, and only that head is
  fitted on the cached features. This is the base-model / embeddings route: fast,
  and the right choice for a pretrained backbone.

Each epoch is scored on the validation split with the validator's own metrics;
the weights with the best validation sn34 are kept (ties go to the lower loss).
Then a temperature is fitted on the validation logits (`calibration.py`) and the
result is written as a kit checkpoint that `kit build --model DIR` accepts as is.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from discriminator import __version__
from discriminator.build import BuildRequest, default_name, make_spec
from discriminator.errors import OutputExistsError, UsageError
from discriminator.registry import resolve_backbone
from discriminator.sources.checkpoint import CHECKPOINT_FILE, is_checkpoint_dir, read_checkpoint, write_checkpoint
from discriminator.spec import DetectorSpec
from discriminator.train.calibration import CalibrationReport, ScoreCard, calibrate_logits, score_logits
from discriminator.train.data import LoadedSplit, load_split
from discriminator.wrapper import Backbone, Detector
from validator_sim.profiles import DEFAULT_PROFILE

MODES = ("finetune", "probe")
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
    batch_size: int | None = None
    learning_rate: float | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    seed: int = 0
    out: Path | None = None
    force: bool = False
    calibrate: bool = True
    augment: bool = True
    #: Passed to the source factory, e.g. {"channels": [8, 16, 32, 64]} for the examples.
    source_options: dict[str, Any] = field(default_factory=dict)
    profile: str = DEFAULT_PROFILE
    show_progress: bool = True


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's training loss and validation scores (uncalibrated, T = 1); epoch 0 is the starting point."""

    epoch: int
    train_loss: float | None
    val_loss: float
    val_accuracy: float
    val_brier: float
    val_sn34: float
    seconds: float


@dataclass
class TrainResult:
    """What `train_detector` produced."""

    checkpoint: Path
    spec: DetectorSpec
    mode: str
    history: list[EpochRecord]
    best_epoch: int
    #: Validation metrics of the kept weights at T = 1 (None when nothing was calibrated: see `calibration`).
    calibration: CalibrationReport | None
    final: ScoreCard
    train_samples: int
    val_samples: int
    dropped: dict[str, dict[str, int]]
    load_seconds: float
    train_seconds: float
    total_seconds: float


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
                   source_options: dict[str, Any]) -> _Prepared:
    """Resolve `model` (a source or a kit checkpoint), build its spec and wrap it; temperature starts at 1."""
    if modality not in ("image", "video"):
        raise UsageError(f"modality must be image or video, got '{modality}'", "run `kit train image …` or `kit train video …`")
    if is_checkpoint_dir(Path(model)):
        if source_options:
            raise UsageError("a checkpoint already records its model options", "drop --model-option when --model is a checkpoint")
        record = read_checkpoint(Path(model))
        source, options = record["source"], dict(record.get("source_options") or {})
    else:
        source, options = model, dict(source_options)
    backbone, defaults = resolve_backbone(model, modality, options=dict(source_options))
    request = BuildRequest(modality=modality, model=model, name=default_name(source), height=height, width=width, frames=frames)
    spec = make_spec(request, backbone, defaults)
    if spec.task != "classify":
        raise UsageError(f"{model} is an embeddings model", "train a classifier: pass a model with a classification head")
    detector = Detector(backbone, spec.replace(temperature=1.0))
    return _Prepared(backbone, detector, spec, source, options)


def _batches(count: int, size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    for start in range(0, count, size):
        yield order[start:start + size]


@torch.no_grad()
def predict_logits(detector: Detector, inputs: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Logits `[N, K]` of the detector in eval mode (temperature as the detector has it)."""
    detector.eval()
    return torch.cat([detector(inputs[idx]) for idx in _batches(len(inputs), batch_size)])


def find_head(module: nn.Module, num_classes: int) -> nn.Linear:
    """The last `nn.Linear` with `num_classes` outputs: the classification head a probe fits."""
    heads = [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise UsageError(f"--mode probe needs a final nn.Linear with {num_classes} outputs, and this model has none",
                         "use --mode finetune")
    return heads[-1]


@torch.no_grad()
def extract_head_inputs(detector: Detector, head: nn.Linear, inputs: torch.Tensor,
                        on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """The head's input per sample `[N, D]`, averaged over frames when the wrapper averages per-frame logits."""
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0].detach()))
    detector.eval()
    features = []
    try:
        for idx in _batches(len(inputs), INFERENCE_BATCH):
            captured.clear()
            detector(inputs[idx])
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
    card = score_logits(logits.numpy(), split.binary_labels, 1.0, profile)
    return EpochRecord(epoch, train_loss, val_loss, card.accuracy, card.brier, card.sn34, seconds)


def _better(record: EpochRecord, best: EpochRecord) -> bool:
    return (record.val_sn34, -record.val_loss) > (best.val_sn34, -best.val_loss)


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder", "choose another --out")
    if (out / CHECKPOINT_FILE).exists() and not force:
        raise OutputExistsError(out)


def train_detector(request: TrainRequest, on_epoch: Callable[[EpochRecord], None] | None = None,
                   on_step: Callable[[str], None] | None = None) -> TrainResult:
    """Load both splits, train, keep the best epoch, calibrate, write the checkpoint (see the module docstring)."""
    step = on_step or (lambda _message: None)
    started = time.perf_counter()
    if request.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got '{request.mode}'", "use --mode finetune or --mode probe")
    defaults = MODE_DEFAULTS[request.mode]
    epochs = request.epochs if request.epochs is not None else defaults.epochs
    batch_size = request.batch_size or defaults.batch_size[request.modality if request.modality in ("image", "video") else "image"]
    learning_rate = request.learning_rate if request.learning_rate is not None else defaults.learning_rate
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--lr", learning_rate)):
        if not value > 0:
            raise UsageError(f"{name} must be positive, got {value}", f"pass a positive {name}")
    model = request.model or f"example-{request.modality}"
    out = Path(request.out) if request.out else DEFAULT_OUT_DIR / request.modality
    _check_out(out, request.force)

    torch.manual_seed(request.seed)
    prepared = _prepare_model(request.modality, model, request.height, request.width, request.frames, request.source_options)
    spec = prepared.spec
    step(f"{model}: {spec.modality} {spec.height}×{spec.width}" + (f", T={spec.frames}" if spec.frames else "")
         + f", {request.mode}, {epochs} epochs")

    with _progress(request.show_progress) as progress:
        splits: dict[str, LoadedSplit] = {}
        for split_name, directory in (("train", request.data), ("val", request.val)):
            task = progress.add_task(f"decoding {split_name}", total=None, note="")
            splits[split_name] = load_split(Path(directory), spec.modality, spec.height, spec.width, spec.frames,
                                            spec.class_names, request.profile,
                                            on_progress=lambda done, total, t=task: progress.update(t, completed=done, total=total))
            progress.remove_task(task)
        train, val = splits["train"], splits["val"]
        load_seconds = time.perf_counter() - started
        step(f"decoded {len(train)} train and {len(val)} validation samples in {load_seconds:.1f} s"
             + "".join(f"; {name}: dropped {sum(d.values())}" for name, d in (("train", train.dropped), ("val", val.dropped)) if d))

        train_started = time.perf_counter()
        run = _run_probe if request.mode == "probe" else _run_finetune
        history, best, val_logits = run(prepared, train, val, epochs, batch_size, learning_rate, request, progress, on_epoch)
        train_seconds = time.perf_counter() - train_started

    calibration = calibrate_logits(val_logits.numpy(), val.binary_labels, 1.0, request.profile) if request.calibrate else None
    temperature = calibration.temperature if calibration else 1.0
    final = calibration.after if calibration else score_logits(val_logits.numpy(), val.binary_labels, 1.0, request.profile)
    if calibration:
        step(f"calibrated: T = {temperature:.3f}, validation Brier {calibration.before.brier:.4f} → {calibration.after.brier:.4f}, "
             f"sn34 {calibration.before.sn34:.4f} → {calibration.after.sn34:.4f}")
    spec = spec.replace(temperature=temperature)
    spec_fields = {"height": spec.height, "width": spec.width, "class_names": list(spec.class_names),
                   "mean": list(spec.mean), "std": list(spec.std), "temperature": temperature}
    if spec.modality == "video":
        spec_fields.update(frames=spec.frames, native_frames=spec.native_frames)
    dropped = {"train": train.dropped, "val": val.dropped}
    training = {"mode": request.mode, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "weight_decay": WEIGHT_DECAY, "seed": request.seed, "augment": request.augment and request.mode == "finetune",
                "profile": request.profile, "train_data": str(request.data), "val_data": str(request.val),
                "train_samples": len(train), "val_samples": len(val), "dropped": dropped, "best_epoch": best.epoch,
                "history": [asdict(r) for r in history], "seconds": round(train_seconds, 1)}
    write_checkpoint(out, prepared.backbone.module, prepared.source, spec.modality, prepared.source_options, spec_fields,
                     extra={"kit_version": __version__, "trained_from": model, "training": training,
                            "calibration": calibration.to_dict() if calibration else None})
    return TrainResult(checkpoint=out, spec=spec, mode=request.mode, history=history, best_epoch=best.epoch,
                       calibration=calibration, final=final, train_samples=len(train), val_samples=len(val),
                       dropped=dropped, load_seconds=load_seconds, train_seconds=train_seconds,
                       total_seconds=time.perf_counter() - started)


def _run_finetune(prepared: _Prepared, train: LoadedSplit, val: LoadedSplit, epochs: int, batch_size: int,
                  learning_rate: float, request: TrainRequest, progress: Progress,
                  on_epoch: Callable[[EpochRecord], None] | None) -> tuple[list[EpochRecord], EpochRecord, torch.Tensor]:
    detector = prepared.detector
    generator = torch.Generator().manual_seed(request.seed)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    history = [_epoch_record(0, None, predict_logits(detector, val.inputs), val, request.profile, 0.0)]
    best, best_state = history[0], copy.deepcopy(detector.backbone.state_dict())
    if on_epoch:
        on_epoch(history[0])
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        task = progress.add_task(f"epoch {epoch}/{epochs}", total=len(train), note="")
        detector.train()
        total_loss, seen = 0.0, 0
        for idx in _batches(len(train), batch_size, generator):
            if len(idx) < 2:  # batch norm cannot train on one sample
                continue
            x = train.inputs[idx]
            if request.augment:
                flip = torch.rand(len(idx), generator=generator) < 0.5
                x = torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
            loss = F.cross_entropy(detector(x), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
            progress.update(task, advance=len(idx), note=f"loss {total_loss / seen:.4f}")
        progress.update(task, description=f"validating {epoch}/{epochs}")
        logits = predict_logits(detector, val.inputs)
        progress.remove_task(task)
        record = _epoch_record(epoch, total_loss / max(seen, 1), logits, val, request.profile, time.perf_counter() - epoch_started)
        history.append(record)
        if _better(record, best):
            best, best_state = record, copy.deepcopy(detector.backbone.state_dict())
        if on_epoch:
            on_epoch(record)
    detector.backbone.load_state_dict(best_state)
    return history, best, predict_logits(detector, val.inputs)


def _run_probe(prepared: _Prepared, train: LoadedSplit, val: LoadedSplit, epochs: int, batch_size: int,
               learning_rate: float, request: TrainRequest, progress: Progress,
               on_epoch: Callable[[EpochRecord], None] | None) -> tuple[list[EpochRecord], EpochRecord, torch.Tensor]:
    detector = prepared.detector
    head = find_head(detector.backbone, prepared.spec.num_classes)
    features = {}
    for split_name, split in (("train", train), ("val", val)):
        task = progress.add_task(f"embedding {split_name}", total=len(split), note="backbone frozen, once")
        features[split_name] = extract_head_inputs(detector, head, split.inputs, lambda n, t=task: progress.advance(t, n))
        progress.remove_task(task)
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
    task = progress.add_task("fitting head", total=epochs, note="")
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        total_loss = 0.0
        for idx in _batches(len(train), batch_size, generator):
            loss = F.cross_entropy(head(features["train"][idx]), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
        with torch.no_grad():
            logits = head(features["val"])
        record = _epoch_record(epoch, total_loss / len(train), logits, val, request.profile, time.perf_counter() - epoch_started)
        history.append(record)
        if _better(record, best):
            best, best_state = record, copy.deepcopy(head.state_dict())
        progress.update(task, advance=1, note=f"val sn34 {record.val_sn34:.4f}")
        if on_epoch:
            on_epoch(record)
    progress.remove_task(task)
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
                         profile: str = DEFAULT_PROFILE, show_progress: bool = True) -> CheckpointCalibration:
    """Refit a checkpoint's temperature on `val`; rewrite it in place (needs `force`) or write a copy to `out`."""
    checkpoint = Path(checkpoint)
    if not is_checkpoint_dir(checkpoint):
        raise UsageError(f"{checkpoint} is not a kit checkpoint (no {CHECKPOINT_FILE})",
                         "point at a folder written by `kit train`")
    target = Path(out) if out else checkpoint
    if target.resolve() == checkpoint.resolve():
        if not force:
            raise OutputExistsError(checkpoint / CHECKPOINT_FILE)
    else:
        _check_out(target, force)
    record = read_checkpoint(checkpoint)
    prepared = _prepare_model(record["modality"], str(checkpoint), None, None, None, {})
    spec = prepared.spec
    with _progress(show_progress) as progress:
        task = progress.add_task("decoding val", total=None, note="")
        split = load_split(Path(val), spec.modality, spec.height, spec.width, spec.frames, spec.class_names, profile,
                           on_progress=lambda done, total: progress.update(task, completed=done, total=total))
        progress.update(task, description="scoring val")
        logits = predict_logits(prepared.detector, split.inputs)
    report = calibrate_logits(logits.numpy(), split.binary_labels, spec.temperature, profile)
    extra = {key: value for key, value in record.items() if key not in _CHECKPOINT_OWN_KEYS}
    extra["calibration"] = {**report.to_dict(), "val_data": str(val)}
    write_checkpoint(target, prepared.backbone.module, prepared.source, spec.modality, prepared.source_options,
                     {**record["spec"], "temperature": report.temperature}, extra=extra)
    return CheckpointCalibration(target, report, len(split), split.dropped)
