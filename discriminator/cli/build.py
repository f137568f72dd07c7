"""`kit build image|video`: wrap a detector for the validator's contract and emit it as a verified bundle and ONNX file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from discriminator.cli.common import (
    PYTHON_HELP,
    Modality,
    console,
    err_console,
    escape,
    examples_epilog,
    kit_command,
    parse_model_options,
    use_python,
)
from discriminator.errors import UsageError
from discriminator.export_options import DEFAULT_OPSET, EXPORTER_NAMES


class Format(str, Enum):
    both = "both"
    bundle = "bundle"
    onnx = "onnx"


class Dtype(str, Enum):
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


class Task(str, Enum):
    auto = "auto"
    classify = "classify"
    embeddings = "embeddings"


EXAMPLES = [
    ("kit build video", "the example video detector (random weights) → submissions/example-video/{bundle/,video_detector.onnx}"),
    ("kit build video --model runs/video --name my-detector", "a `kit train` checkpoint → the bundle to push + its ONNX twin"),
    ("kit build image --model example-image --format bundle --dtype float16", "only the bundle, weights stored as float16"),
    ("kit build video --model hf-videomae --name vmae", "VideoMAE from the hub, re-headed to 3 classes"),
    ("kit build image --model hf:./vit-finetuned --name vit", "a local save_pretrained() folder"),
    ("kit build image --model py:my_net.py:make_model --weights best.safetensors", "your own nn.Module"),
    ("kit build image --model py:my_net.py:make_model --model-option depth=4", "the same, built as make_model(depth=4); model.py makes the same call"),
    ("kit build image --model timm:convnext_tiny --weights convnext.safetensors", "a timm architecture with your weights"),
    ("kit build image --model example-image --classes real,ai", "a 2-logit head (scored, but never right on semisynthetic)"),
    ("kit build video --model hf:./videomae-base --task embeddings", "export embeddings [B,tokens,dim] + [B,dim]"),
    ("kit build image --model hf:./vit-finetuned --with-embeddings", "the detector plus vit-finetuned_embed.onnx and _class.onnx"),
    ("kit build video --model runs/video --force", "rebuild over an earlier build (its old zips are removed)"),
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
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered name (see `kit models`), hf:<id-or-dir>, timm:<architecture>, py:<file.py>:<factory>, or a `kit train` checkpoint folder. Default: example-<modality>."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="Build name; output goes to submissions/<name>/."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="State dict (.safetensors or torch) to load into the model."),
    model_option: list[str] = typer.Option([], "--model-option", help="KEY=VALUE passed to the source (repeatable): a registered model's or a py: file's factory, timm.create_model, e.g. channels=8,16,32,64."),
    height: Optional[int] = typer.Option(None, "--height", help="Fixed input height (the validator resizes to it). Default: the model's (a Hugging Face config's image_size, a checkpoint's), else 224."),
    width: Optional[int] = typer.Option(None, "--width", help="Fixed input width. Default: as for --height."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames the validator sends (video). Default 16; the graph accepts any T."),
    native_frames: Optional[int] = typer.Option(None, "--native-frames", help="Frames your backbone needs (py: sources); incoming T is resampled to it."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Class order of the logits, comma-separated; index 0 must be real. Default real,synthetic,semisynthetic."),
    task: Task = typer.Option(Task.auto, "--task", help="classify (logits for the validator), embeddings (base models), or auto."),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset, 14–22 (validators run onnxruntime ≥ 1.22)."),
    exporter: str = typer.Option("torchscript", "--exporter", help=f"One of: {', '.join(EXPORTER_NAMES)}."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder. Default submissions/<name>/."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing build in the output folder."),
    with_embeddings: bool = typer.Option(False, "--with-embeddings", help="HF classifiers: also write <name>_embed.onnx (base model) and <name>_class.onnx."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads for verification (onnxruntime and the bundle process). Default: all cores."),
    format: Optional[Format] = typer.Option(None, "--format", help="What to emit: bundle (what the network accepts today), onnx (the ONNX era; fast local benches) or both. Default: both (onnx for --task embeddings)."),
    dtype: Dtype = typer.Option(Dtype.float32, "--dtype", help="Bundle dtype: model_config.yaml's dtype and the dtype the weights are stored in."),
    frame_rate: Optional[float] = typer.Option(None, "--frame-rate", help="Video bundles: preprocessing.frame_rate; the evaluator then keeps every round(fps/rate)-th frame."),
    python: Optional[str] = typer.Option(None, "--python", help=PYTHON_HELP),
) -> None:
    """Wrap a detector (uint8 in, normalised inside, 3-class logits out), emit a safetensors bundle and an ONNX
    file, and verify each by running it: the bundle loaded as the network's evaluator loads it, the ONNX file in
    onnxruntime, both against PyTorch."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from discriminator.build import BuildRequest, build_detector

    use_python(python)
    request = BuildRequest(
        modality=modality.value, model=model or f"example-{modality.value}", name=name, weights=weights,
        height=height, width=width, frames=frames, native_frames=native_frames, class_names=_parse_classes(classes),
        task=task.value, opset=opset, exporter=exporter, out_dir=out, force=force, threads=threads,
        with_embeddings=with_embeddings, source_options=parse_model_options(model_option),
        formats=(format.value,) if format else None, dtype=dtype.value, frame_rate=_positive_rate(frame_rate),
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
    spec = result.spec
    console.print(f"[green]✓[/] built {escape(spec.name)} in {result.total_seconds:.1f} s → {escape(str(result.out_dir))}/")
    if result.bundle_dir is not None:
        check = result.bundle_verify
        onnx_part = (f", vs ONNX {check.max_logits_vs_onnx:.1e}" if check.max_logits_vs_onnx is not None else "")
        drift = (f"; {check.dtype} drift max |Δp| {check.max_probs_vs_torch:.1e} (limit {check.drift_limit:g}), "
                 f"p(real) {check.max_p_real_vs_torch:.1e}" if check.drift_limit is not None else "")
        console.print(f"  bundle  {escape(str(result.bundle_dir))}/ ({result.bundle_size_bytes / 1e6:.1f} MB, {check.dtype}) — "
                      f"loaded as the evaluator does; max |bundle − PyTorch| {check.max_logits_vs_torch:.1e}{onnx_part}"
                      f" over {len(check.rows)} runs{drift}")
        versions = check.runtime.get("versions") or {}
        under = ", ".join(f"{name} {versions[name]}" for name in ("torch", "transformers", "timm") if versions.get(name))
        if check.runtime.get("kind") == "kit":
            err_console.print(f"  [yellow]! verified under the kit's own environment ({escape(under)}), not the "
                              "evaluator's: `kit runtime install`, then rebuild, to prove it under gasbench's pins[/]")
        else:
            console.print(f"  runtime {escape(under)}" + (f" — differs from the evaluator: {escape('; '.join(check.runtime['drift']))}"
                                                          if check.runtime.get("drift") else " (the evaluator's pins)"))
    if result.onnx_path is not None:
        console.print(f"  onnx    {escape(str(result.onnx_path))} ({result.size_bytes / 1e6:.1f} MB, export {result.export_seconds:.1f} s) — "
                      f"max |ONNX − PyTorch| {result.max_abs_diff:.1e} over {len(result.verify.rows)} runs "
                      f"(tolerance {result.verify.tolerance:.1e}, scaled to the logits)")
    shape = "×".join(str(d) for d in spec.input_shape("B", "T" if spec.frames_axis_symbolic else spec.frames))
    console.print(f"  input uint8 [{shape}] → {'logits [B,' + str(spec.num_classes) + '] ' + ','.join(spec.class_names) if spec.task == 'classify' else 'embeddings'}")
    for extra in result.extra_files:
        console.print(f"  also {escape(str(extra))}")
    for gone in result.removed:
        console.print(f"  removed {escape(str(gone))} (packaged from the build this one replaces)")
    if spec.task != "classify":
        console.print(f"  manifest {escape(str(result.manifest_path))} — embeddings are not a submission: "
                      "train a head on them (kit train --mode probe) and build the classifier")
    else:
        console.print(f"  manifest {escape(str(result.manifest_path))}   next: kit check {escape(str(result.out_dir))}")


def _positive_rate(value: Optional[float]) -> Optional[float]:
    import math

    if value is not None and (not math.isfinite(value) or value <= 0):
        raise UsageError(f"--frame-rate must be a number > 0, got {value:g}", "e.g. --frame-rate 8, or leave it out for every frame")
    return value


def register(app: typer.Typer) -> None:
    app.command("build", epilog=examples_epilog(EXAMPLES))(build_command)
