"""`kit train image|video` and `kit calibrate`: fit and calibrate a detector on local data (thin layers over `discriminator.train`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from discriminator.cli.common import (
    Modality,
    console,
    err_console,
    examples_epilog,
    kit_command,
    parse_model_options,
    print_success,
)
from discriminator.errors import UsageError
from validator_sim.profiles import TRAIN_PROFILE

if TYPE_CHECKING:  # discriminator.train imports torch: only the commands that train load it
    from discriminator.train.calibration import CalibrationReport

TRAIN_EXAMPLES = [
    ("kit train video --data demo_data/train --val demo_data/val --height 112 --width 112 --native-frames 4 --model-option channels=8,16,32,64 --batch-size 8 --lr 3e-3 --epochs 16 --robustness-augment 0.5 --threads 1",
     "fine-tune the small example video CNN on the demo data → runs/video/ (`make demo`'s recipe; it also passes --model-option seed=0 --seed 0)"),
    ("kit train image --data data/train --val data/val --model hf:./my-vit-base --mode probe --out runs/vit-probe",
     "linear probe: freeze a local HF base model, fit a 3-class head on its cached pooled embeddings"),
    ("kit train image --data data/train --val data/val --model hf:./my-vit --train-last 2 --lr 1e-4 --out runs/vit-last2",
     "fine-tune only the last 2 blocks and the head"),
    ("kit train image --data data/train --val data/val --model hf:./my-real-ai-vit --classes real,ai --out runs/vit-2class",
     "keep a trained 2-class [real, ai] head (semisynthetic trains as ai)"),
    ("torchrun --nproc_per_node 4 -m discriminator.cli.app train video --data d/train --val d/val --model hf:./videomae --batch-size 32",
     "one process per GPU (DDP); rank 0 validates and writes the checkpoint"),
    ("kit train video --data d/train --val d/val --model runs/video --epochs 5 --lr 5e-4 --out runs/video2",
     "continue from an earlier checkpoint"),
    ("kit train image --data demo_data/train --val demo_data/val --model-option channels=8,16,32,64 --lr 3e-3 --robustness-augment 0.5",
     "also train on half of each dataset's samples as the evaluator's robustness pass re-encodes them (JPEG/WebP; H.264 for video)"),
    ("kit train video --from-bundle their_bundle/ --data d/train --val d/val --mode probe",
     "give anyone's 2-class bundle a 3-class head through its own load_model → their_bundle-3class/"),
    ("kit build video --model runs/video", "then export the checkpoint (its size, frames and temperature come with it)"),
]
CALIBRATE_EXAMPLES = [
    ("kit calibrate runs/video --data demo_data/val --force", "refit the temperature in place"),
    ("kit calibrate runs/video --data new_val/ --out runs/video-recal --profile current", "write a recalibrated copy, fitted for the multiclass Brier"),
]


class Mode(str, Enum):
    finetune = "finetune"
    probe = "probe"


class Task(str, Enum):
    auto = "auto"
    classify = "classify"


class Scoring(str, Enum):
    binary = "binary"
    multiclass = "multiclass"


def calibration_table(report: CalibrationReport, title: str) -> Table:
    """Both scorings before and after calibration, one metric per row; the fitted scoring's sn34 in bold."""
    table = Table(title=title)
    table.add_column("validation", justify="left")
    table.add_column(f"before (T = {report.before.temperature:.3f})", justify="right")
    table.add_column(f"after (T = {report.after.temperature:.3f})", justify="right")
    rows = [("binary accuracy", "accuracy"), ("binary MCC", "mcc"), ("binary Brier", "brier"), ("binary ECE", "ece"),
            ("binary sn34", "sn34"), ("3-class accuracy", "multiclass_accuracy"), ("3-class R_K", "multiclass_mcc"),
            ("3-class Brier", "multiclass_brier"), ("3-class sn34", "multiclass_sn34")]
    kept = "sn34" if report.scoring == "binary" else "multiclass_sn34"
    for label, key in rows:
        before, after = getattr(report.before, key), getattr(report.after, key)
        style = "[bold]" if key == kept else ""
        table.add_row(f"{style}{label}", f"{style}{before:.4f}", f"{style}{after:.4f}")
    return table


def _epoch_label(epoch: int) -> str:
    """`epoch  N`, or `start` for epoch 0: the validation of the starting weights, before any step."""
    return "start    " if epoch == 0 else f"epoch {epoch:>3}"


def _parse_classes(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(names) not in (2, 3) or names[0] != "real":
        raise UsageError(f"--classes must list 2 or 3 names starting with real, got '{text}'",
                         "use --classes real,ai or --classes real,synthetic,semisynthetic")
    return names


@kit_command
def train_command(
    modality: Modality = typer.Argument(..., help="image or video."),
    data: Path = typer.Option(..., "--data", help="Training split, laid out as <real|synthetic|semisynthetic>/<dataset>/…"),
    val: Path = typer.Option(..., "--val", help="Validation split (same layout): picks the best epoch and fits the temperature."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Where to start: a registered name (`kit models`), hf:<id-or-dir>, py:<file.py>:<factory>, or a `kit train` checkpoint. Default: example-<modality>."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to the model's factory (repeatable), e.g. channels=8,16,32,64."),
    mode: Mode = typer.Option(Mode.finetune, "--mode", help="finetune: train the parameters (all, or --train-last N blocks); probe: freeze the backbone, fit the head on cached embeddings."),
    task: Task = typer.Option(Task.auto, "--task", help="classify: give a base (headless) model a linear head on its pooled embedding. auto: classify with the model's own head (probe mode adds one to a base model)."),
    train_last: Optional[int] = typer.Option(None, "--train-last", help="Fine-tune only the last N blocks (and the head); the rest stays frozen."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Head classes, comma-separated, real first: real,ai (2 logits) or real,synthetic,semisynthetic (3). Default: the model's own."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs. Default 10 (finetune) / 60 (probe)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step, over all processes under torchrun. Default: finetune 32 images / 8 clips; probe 64."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak AdamW learning rate (one epoch of warm-up, then cosine). Default 2e-3 (finetune) / 1e-2 (probe)."),
    height: Optional[int] = typer.Option(None, "--height", help="Input height the detector is trained and exported at. Default: the model's (224)."),
    width: Optional[int] = typer.Option(None, "--width", help="Input width. Default: the model's (224)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames per clip, as the validator sends them (video). Default 16."),
    native_frames: Optional[int] = typer.Option(None, "--native-frames", help="Frames the backbone looks at (video); the incoming clip is resampled to it. Default: the model's."),
    seed: int = typer.Option(0, "--seed", help="Seed for shuffling, augmentation and dropout."),
    profile: str = typer.Option(TRAIN_PROFILE, "--profile", help="Validator profile whose pixels and scoring to train for: current (today: 3 classes, epochs kept by multiclass sn34, T fitted so the 3-class Brier drops and the binary one does not rise) or onnx-2026-02 (binary)."),
    select_by: Optional[Scoring] = typer.Option(None, "--select-by", help="The sn34 that picks the epoch and the Brier the temperature fits: binary or multiclass. Default: the profile's."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Fit a temperature on --val after training (on by default)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random horizontal flips while fine-tuning."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Validate and keep a moving average of the weights (fine-tuning)."),
    robustness_augment: float = typer.Option(0.0, "--robustness-augment", metavar="P", help="Share (0–1) of each training dataset's samples also trained on as the evaluator's robustness pass sees them (images ×0.5 down/up, JPEG q55 → WebP q75 → JPEG q80; clips H.264 CRF 23), as extra samples computed once at load, picked by --seed. Costs (1 + P)× the training steps. Default 0 (off); e.g. --robustness-augment 0.5."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Checkpoint folder. Default runs/<modality>/ (with --from-bundle: <bundle>-3class/ beside it)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing checkpoint in --out."),
    threads: Optional[int] = typer.Option(None, "--threads", help="PyTorch threads for training and validation. Default: one per core. On a machine other jobs load, 1 is often several times faster (two threads wait on each other whenever a core is taken away)."),
    from_bundle: Optional[Path] = typer.Option(None, "--from-bundle", help="Start from any bundle (model_config.yaml + model.py + weights): its own load_model builds it with a 3-wide head, every weight whose shape still matches is kept, and a new 3-class bundle is written beside it (--mode probe: the new head only)."),
) -> None:
    """Train or fine-tune a detector on local data with the validator's own pixels; keep the best epoch; calibrate."""
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, got {threads}", "pass e.g. --threads 1")
        import torch

        torch.set_num_threads(threads)
    if from_bundle is not None:
        given = [flag for flag, value in (("--model", model), ("--model-option", model_option), ("--task", task != Task.auto),
                                          ("--train-last", train_last), ("--classes", classes), ("--height", height),
                                          ("--width", width), ("--frames", frames), ("--native-frames", native_frames),
                                          ("--select-by", select_by)) if value]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be combined with --from-bundle: the bundle's model.py and "
                             "model_config.yaml decide the model, its size and frames, and the head is 3 classes",
                             "drop them, or train a kit source with --model instead")
        _train_from_bundle(modality.value, from_bundle, data, val, mode.value, epochs, batch_size, lr, seed, out, force,
                           calibrate, profile, robustness_augment)
        return
    from discriminator.train import TrainRequest, train_detector

    request = TrainRequest(
        modality=modality.value, data=data, val=val, model=model, mode=mode.value, epochs=epochs, batch_size=batch_size,
        learning_rate=lr, height=height, width=width, frames=frames, native_frames=native_frames, seed=seed, out=out,
        force=force, calibrate=calibrate, augment=augment, ema=ema, source_options=parse_model_options(model_option),
        profile=profile, task=task.value, train_last=train_last, class_names=_parse_classes(classes),
        select_by=select_by.value if select_by else None, robustness_augment=robustness_augment,
    )

    def on_epoch(record) -> None:
        train_loss = "  —   " if record.train_loss is None else f"{record.train_loss:.4f}"
        err_console.print(f"  {_epoch_label(record.epoch)}  train loss {train_loss}  val loss {record.val_loss:.4f}  "
                          f"acc {record.val_accuracy:.4f}  Brier {record.val_brier:.4f}  sn34 {record.val_sn34:.4f}  "
                          f"3-class sn34 {record.val_multiclass_sn34:.4f}  ({record.seconds:.1f} s)")

    result = train_detector(request, on_epoch=on_epoch, on_step=lambda message: err_console.print(f"  · {message}"))
    if result is None:  # a torchrun process other than rank 0
        return
    if result.calibration:
        console.print(calibration_table(result.calibration, f"validation ({result.val_samples} samples), {profile} pixels, "
                                                            f"temperature fitted for the {result.scoring} Brier"))
    kept = (f"best epoch {result.best_epoch} of {result.epochs}" if result.best_epoch
            else f"no epoch of {result.epochs} beat the starting weights, which are kept")
    summary = (f"checkpoint {result.checkpoint} ({kept} by {result.scoring} sn34; val sn34 binary {result.final.sn34:.4f}, "
               f"multiclass {result.final.multiclass_sn34:.4f}; T = {result.spec.temperature:.3f}) in {result.total_seconds:.0f} s "
               f"(decode {result.load_seconds:.0f} s, train {result.train_seconds:.0f} s"
               + (f", {result.processes} processes" if result.processes > 1 else "") + ")")
    if result.best_epoch:
        print_success(summary)
        console.print(f"  next: kit build {result.spec.modality} --model {result.checkpoint}")
        return
    # Nothing trained: the checkpoint holds the weights training started from (random ones, for a model built from scratch).
    err_console.print(f"[bold yellow]warning:[/] {summary}")
    console.print("  training did not improve on the starting weights: train longer (--epochs), try another --lr, "
                  "or check the data; building this checkpoint packages the starting weights")


def _train_from_bundle(modality: str, bundle: Path, data: Path, val: Path, mode: str, epochs: int | None,
                       batch_size: int | None, lr: float | None, seed: int, out: Path | None, force: bool,
                       calibrate: bool, profile: str, robustness_augment: float) -> None:
    from discriminator.train.from_bundle import BundleTrainRequest, train_from_bundle

    def on_epoch(epoch: int, train_loss: float | None, card) -> None:
        loss = "  —   " if train_loss is None else f"{train_loss:.4f}"
        err_console.print(f"  {_epoch_label(epoch)}  train loss {loss}  3-class acc {card.multiclass_accuracy:.4f}  "
                          f"3-class sn34 {card.multiclass_sn34:.4f}  binary sn34 {card.sn34:.4f}")

    result = train_from_bundle(BundleTrainRequest(modality=modality, bundle=bundle, data=data, val=val, mode=mode, epochs=epochs,
                                                  learning_rate=lr, batch_size=batch_size, seed=seed, out=out, force=force,
                                                  calibrate=calibrate, profile=profile,
                                                  robustness_augment=robustness_augment),
                               on_epoch=on_epoch, on_step=lambda message: err_console.print(f"  · {message}"))
    if result.calibration:
        console.print(calibration_table(result.calibration, f"validation, {profile} pixels, temperature fitted for the "
                                                            f"{result.scoring} Brier and folded into {result.head}"))
    print_success(f"3-class bundle {result.out} (head {result.head}: {result.original_classes} → 3; best epoch {result.best_epoch} "
                  f"of {result.epochs} by {result.scoring} sn34; val 3-class accuracy {result.val_multiclass_accuracy:.4f}, "
                  f"sn34 multiclass {result.val_multiclass_sn34:.4f}, binary {result.val_sn34:.4f}; T = {result.temperature:.3f}; "
                  f"verified in a fresh process) in {result.seconds:.0f} s")
    console.print(f"  next: kit check {result.out} --modality {modality}")


@kit_command
def calibrate_command(
    checkpoint: Path = typer.Argument(..., help="A `kit train` checkpoint folder."),
    data: Path = typer.Option(..., "--data", help="Validation split to fit the temperature on (<media_type>/<dataset>/… layout)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the recalibrated checkpoint here instead of in place."),
    profile: str = typer.Option(TRAIN_PROFILE, "--profile", help="Validator profile: its pixels, and the Brier T minimises (current: the 3-class Brier without raising the binary one; onnx-2026-02: the binary Brier)."),
    select_by: Optional[Scoring] = typer.Option(None, "--select-by", help="Fit T for the binary or the multiclass Brier. Default: the profile's."),
    force: bool = typer.Option(False, "--force", "-f", help="Allow rewriting CHECKPOINT in place, or replacing a checkpoint in --out."),
) -> None:
    """Fit the temperature that minimises validation Brier and store it in the checkpoint (the build bakes it into the logits)."""
    from discriminator.sources.checkpoint import read_checkpoint
    from discriminator.train import calibrate_checkpoint

    result = calibrate_checkpoint(checkpoint, data, out=out, force=force, profile=profile,
                                  scoring=select_by.value if select_by else None)
    console.print(calibration_table(result.report, f"validation ({result.val_samples} samples), {profile} pixels, "
                                                   f"temperature fitted for the {result.report.scoring} Brier"))
    if result.dropped:
        err_console.print(f"[yellow]warning:[/] dropped {sum(result.dropped.values())} undecodable sample(s): "
                          + ", ".join(f"{reason} ×{n}" for reason, n in result.dropped.items()))
    modality = read_checkpoint(result.checkpoint)["modality"]
    print_success(f"temperature {result.report.before.temperature:.3f} → {result.report.temperature:.3f} in {result.checkpoint}")
    console.print(f"  next: kit build {modality} --model {result.checkpoint} --force")


def register(app: typer.Typer) -> None:
    app.command("train", epilog=examples_epilog(TRAIN_EXAMPLES))(train_command)
    app.command("calibrate", epilog=examples_epilog(CALIBRATE_EXAMPLES))(calibrate_command)
