"""`kit package`: check a model, then write its deterministic submission zip and record."""

from __future__ import annotations

from typing import Optional

import typer

from discriminator.cli.check import rule_progress
from discriminator.cli.common import console, examples_epilog, kit_command, print_success

EXAMPLES = [
    ("kit package submissions/example-video/", "check and zip a `kit build` folder into submissions/example-video/video_detector.zip"),
    ("kit package my_model.onnx --hotkey 5F...", "also record the commitment the chain will hold for your hotkey"),
    ("kit package my_model.onnx --out dist/ --force", "write dist/<modality>_detector.zip, replacing an earlier one"),
]


@kit_command
def package_command(
    path: str = typer.Argument(..., help="An .onnx file or a `kit build` folder."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Folder for the zip (default: submissions/<name>/)."),
    hotkey: Optional[str] = typer.Option(None, "--hotkey", help="Your hotkey's SS58 address: adds the chain commitment to the record."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing zip and record."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="image or video (default: the spec's, else from the input rank)."),
    ort_min: str = typer.Option("1.22", "--ort-min", help="The validators' onnxruntime version."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="intra-op threads for the latency figure."),
) -> None:
    """Run `kit check`, refuse on any failure (warnings never block), then write the zip and its .json record."""
    from discriminator.check.report import print_report
    from discriminator.package import CheckFailedError, package_submission

    try:
        with rule_progress() as on_rule:
            result = package_submission(path, out_dir=out, hotkey=hotkey, force=force, modality=modality,
                                        ort_min=ort_min, threads=threads, on_rule=on_rule)
    except CheckFailedError as exc:
        print_report(exc.report, console)
        raise
    print_report(result.report, console)
    print_success(f"wrote {result.zip_path} ({result.size / 1024:.1f} KiB, one member: {result.modality}_detector.onnx)")
    print_success(f"record {result.record_path}")
    console.print(f"sha256      {result.sha256}")
    if result.commitment:
        console.print(f"commitment  {result.commitment}")
    console.print(f"push with   {result.push_command}")


def register(app: typer.Typer) -> None:
    app.command("package", epilog=examples_epilog(EXAMPLES))(package_command)
