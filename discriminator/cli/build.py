"""`kit build image|video`: wrap a detector for the validator's contract and export it to verified ONNX."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
from discriminator.export_options import DEFAULT_OPSET, EXPORTER_NAMES


class Task(str, Enum):
    auto = "auto"
    classify = "classify"
    embeddings = "embeddings"


EXAMPLES = [
    ("kit build video", "the example video detector (random weights) → submissions/example-video/video_detector.onnx"),
    ("kit build video --model hf-videomae --name vmae", "VideoMAE from the hub, re-headed to 3 classes"),
    ("kit build image --model hf:./vit-finetuned --name vit", "a local save_pretrained() folder"),
    ("kit build image --model py:my_net.py:make_model --weights best.safetensors", "your own nn.Module"),
    ("kit build video --model hf:./videomae-base --task embeddings", "export embeddings [B,tokens,dim] + [B,dim]"),
    ("kit build image --model hf:./vit-finetuned --with-embeddings", "the detector plus vit-finetuned_embed.onnx and _class.onnx"),
    ("kit build video --model runs/video/best --force", "a `kit train` checkpoint, replacing an earlier build"),
]


def _parse_classes(text: Optional[str]) -> Optional[tuple[str, ...]]:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if len(names) not in (2, 3):
        raise UsageError(f"--classes needs 2 or 3 comma-separated names, got {len(names)}", "e.g. --classes real,synthetic,semisynthetic")
    return names


@kit_command
def build_command(
    modality: Modality = typer.Argument(..., help="image ([B,3,H,W] input) or video ([B,T,3,H,W] input)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered name (see `kit models`), hf:<id-or-dir>, py:<file.py>:<factory>, or a `kit train` checkpoint folder. Default: example-<modality>."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Build name; output goes to submissions/<name>/."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="State dict (.safetensors or torch) to load into the model."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to a registered model's factory (repeatable), e.g. channels=8,16,32,64."),
    height: Optional[int] = typer.Option(None, "--height", help="Fixed input height (the validator resizes to it). Default 224."),
    width: Optional[int] = typer.Option(None, "--width", help="Fixed input width. Default 224."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames the validator sends (video). Default 16; the graph accepts any T."),
    native_frames: Optional[int] = typer.Option(None, "--native-frames", help="Frames your backbone needs (py: sources); incoming T is resampled to it."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Class order of the logits, comma-separated; index 0 must be real. Default real,synthetic,semisynthetic."),
    task: Task = typer.Option(Task.auto, "--task", help="classify (logits for the validator), embeddings (base models), or auto."),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset, 14–22 (validators run onnxruntime ≥ 1.22)."),
    exporter: str = typer.Option("torchscript", "--exporter", help=f"One of: {', '.join(EXPORTER_NAMES)}."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default submissions/<name>/."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing build in the output folder."),
    with_embeddings: bool = typer.Option(False, "--with-embeddings", help="HF classifiers: also write <name>_embed.onnx (base model) and <name>_class.onnx."),
    threads: Optional[int] = typer.Option(None, "--threads", help="onnxruntime threads for verification. Default: all cores."),
) -> None:
    """Wrap a detector (uint8 in, normalised in-graph, 3-class logits out), export it to ONNX and verify it by running."""
    from discriminator.build import BuildRequest, build_detector

    request = BuildRequest(
        modality=modality.value, model=model or f"example-{modality.value}", name=name, weights=weights,
        height=height, width=width, frames=frames, native_frames=native_frames, class_names=_parse_classes(classes),
        task=task.value, opset=opset, exporter=exporter, out_dir=out, force=force, threads=threads,
        with_embeddings=with_embeddings, source_options=parse_model_options(model_option),
    )
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        stage = progress.add_task("starting", total=None)
        verify_task = None

        def on_step(message: str) -> None:
            progress.update(stage, description=message)
            err_console.print(f"  · {message}")

        def on_verify(done: int, total: int) -> None:
            nonlocal verify_task
            if verify_task is None:
                verify_task = progress.add_task("parity runs", total=total)
            progress.update(verify_task, completed=done)

        result = build_detector(request, on_step=on_step, on_verify=on_verify)
    for note in result.notes:
        style = "bold yellow" if note.startswith("UNTRAINED") else "yellow"
        err_console.print(f"  [{style}]! {note}[/]")
    runs = len(result.verify.rows)
    print_success(
        f"built {result.onnx_path} ({result.size_bytes / 1e6:.1f} MB) in {result.total_seconds:.1f} s "
        f"(export {result.export_seconds:.1f} s); parity max |ONNX − PyTorch| = {result.max_abs_diff:.1e} "
        f"over {runs} runs (tolerance {result.verify.tolerance:g})"
    )
    spec = result.spec
    shape = "×".join(str(d) for d in spec.input_shape("B", "T" if spec.frames_axis_symbolic else spec.frames))
    console.print(f"  input uint8 [{shape}] → {'logits [B,' + str(result.spec.num_classes) + '] ' + ','.join(result.spec.class_names) if result.spec.task == 'classify' else 'embeddings'}")
    for extra in result.extra_files:
        console.print(f"  also {extra}")
    console.print(f"  manifest {result.manifest_path}   next: kit check {result.onnx_path.parent}")


def register(app: typer.Typer) -> None:
    app.command("build", epilog=examples_epilog(EXAMPLES))(build_command)
