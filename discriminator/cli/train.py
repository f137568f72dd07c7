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

if TYPE_CHECKING:  # discriminator.train imports torch: only the commands that train load it
    from discriminator.train.calibration import CalibrationReport

TRAIN_EXAMPLES = [
    ("kit train video --data demo_data/train --val demo_data/val --model-option channels=8,16,32,64 --batch-size 4 --lr 3e-3 --epochs 12",
     "fine-tune the small example video CNN on the demo data → runs/video/"),
    ("kit train image --data data/train --val data/val --model hf:./my-vit --mode probe --out runs/vit-probe",
     "linear probe: freeze a local HF backbone, fit its head on cached embeddings"),
    ("kit train video --data d/train --val d/val --model runs/video --epochs 5 --lr 5e-4 --out runs/video2",
     "continue from an earlier checkpoint"),
    ("kit build video --model runs/video", "then export the checkpoint (its size, frames and temperature come with it)"),
]
CALIBRATE_EXAMPLES = [
    ("kit calibrate runs/video --data demo_data/val --force", "refit the temperature in place"),
    ("kit calibrate runs/video --data new_val/ --out runs/video-recal", "write a recalibrated copy"),
]


class Mode(str, Enum):
    finetune = "finetune"
    probe = "probe"


def calibration_table(report: CalibrationReport, title: str) -> Table:
    table = Table(title=title)
    for column in ("", "temperature", "accuracy", "MCC", "Brier", "ECE", "CE", "sn34"):
        table.add_column(column, justify="left" if not column else "right")
    for label, card in (("before", report.before), ("after", report.after)):
        table.add_row(label, f"{card.temperature:.3f}", f"{card.accuracy:.4f}", f"{card.mcc:.4f}", f"{card.brier:.4f}",
                      f"{card.ece:.4f}", f"{card.cross_entropy:.4f}", f"[bold]{card.sn34:.4f}[/]")
    return table


@kit_command
def train_command(
    modality: Modality = typer.Argument(..., help="image or video."),
    data: Path = typer.Option(..., "--data", help="Training split, laid out as <real|synthetic|semisynthetic>/<dataset>/…"),
    val: Path = typer.Option(..., "--val", help="Validation split (same layout): picks the best epoch and fits the temperature."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Where to start: a registered name (`kit models`), hf:<id-or-dir>, py:<file.py>:<factory>, or a `kit train` checkpoint. Default: example-<modality>."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to the model's factory (repeatable), e.g. channels=8,16,32,64."),
    mode: Mode = typer.Option(Mode.finetune, "--mode", help="finetune: train every parameter; probe: freeze the backbone, fit the head on cached embeddings."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs. Default 10 (finetune) / 60 (probe)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step. Default: finetune 32 images / 8 clips; probe 64."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate. Default 2e-3 (finetune) / 1e-2 (probe)."),
    height: Optional[int] = typer.Option(None, "--height", help="Input height the detector is trained and exported at. Default: the model's (224)."),
    width: Optional[int] = typer.Option(None, "--width", help="Input width. Default: the model's (224)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames per clip, as the validator sends them (video). Default 16."),
    seed: int = typer.Option(0, "--seed", help="Seed for shuffling, augmentation and dropout."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Fit a temperature on --val after training (on by default)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random horizontal flips while fine-tuning."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Checkpoint folder. Default runs/<modality>/."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing checkpoint in --out."),
) -> None:
    """Train or fine-tune a detector on local data with the validator's own pixels; keep the best epoch; calibrate."""
    from discriminator.train import TrainRequest, train_detector

    request = TrainRequest(
        modality=modality.value, data=data, val=val, model=model, mode=mode.value, epochs=epochs, batch_size=batch_size,
        learning_rate=lr, height=height, width=width, frames=frames, seed=seed, out=out, force=force,
        calibrate=calibrate, augment=augment, source_options=parse_model_options(model_option),
    )

    def on_epoch(record) -> None:
        train_loss = "  —   " if record.train_loss is None else f"{record.train_loss:.4f}"
        err_console.print(f"  epoch {record.epoch:>3}  train loss {train_loss}  val loss {record.val_loss:.4f}  "
                          f"acc {record.val_accuracy:.4f}  Brier {record.val_brier:.4f}  sn34 {record.val_sn34:.4f}  "
                          f"({record.seconds:.1f} s)")

    result = train_detector(request, on_epoch=on_epoch, on_step=lambda message: err_console.print(f"  · {message}"))
    if result.calibration:
        console.print(calibration_table(result.calibration, f"validation ({result.val_samples} samples), onnx-2026-02 scoring"))
    print_success(f"checkpoint {result.checkpoint} (best epoch {result.best_epoch} of {len(result.history)}, "
                  f"val sn34 {result.final.sn34:.4f}, T = {result.spec.temperature:.3f}) in {result.total_seconds:.0f} s "
                  f"(decode {result.load_seconds:.0f} s, train {result.train_seconds:.0f} s)")
    console.print(f"  next: kit build {result.spec.modality} --model {result.checkpoint}")


@kit_command
def calibrate_command(
    checkpoint: Path = typer.Argument(..., help="A `kit train` checkpoint folder."),
    data: Path = typer.Option(..., "--data", help="Validation split to fit the temperature on (<media_type>/<dataset>/… layout)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the recalibrated checkpoint here instead of in place."),
    force: bool = typer.Option(False, "--force", "-f", help="Allow rewriting CHECKPOINT in place, or replacing a checkpoint in --out."),
) -> None:
    """Fit the temperature that minimises validation Brier and store it in the checkpoint (the build bakes it into the logits)."""
    from discriminator.train import calibrate_checkpoint

    result = calibrate_checkpoint(checkpoint, data, out=out, force=force)
    console.print(calibration_table(result.report, f"validation ({result.val_samples} samples), onnx-2026-02 scoring"))
    if result.dropped:
        err_console.print(f"[yellow]warning:[/] dropped {sum(result.dropped.values())} undecodable sample(s): "
                          + ", ".join(f"{reason} ×{n}" for reason, n in result.dropped.items()))
    print_success(f"temperature {result.report.before.temperature:.3f} → {result.report.temperature:.3f} in {result.checkpoint}")
    console.print(f"  next: kit build <image|video> --model {result.checkpoint} --force")


def register(app: typer.Typer) -> None:
    app.command("train", epilog=examples_epilog(TRAIN_EXAMPLES))(train_command)
    app.command("calibrate", epilog=examples_epilog(CALIBRATE_EXAMPLES))(calibrate_command)
