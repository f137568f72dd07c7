"""`kit package`: check a model, then write its deterministic submission zip and record beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from discriminator.cli.check import DEVICE_HELP, TIME_LIMIT_HELP, rule_progress
from discriminator.cli.common import PYTHON_HELP, console, err_console, examples_epilog, kit_command, print_success, use_python
from discriminator.formats import FORMATS

EXAMPLES = [
    ("kit package submissions/example-video/", "check and zip a `kit build` folder's bundle into submissions/example-video/video_bundle.zip"),
    ("kit package submissions/example-video/ --format onnx", "the ONNX twin instead, as submissions/example-video/video_detector.zip"),
    ("kit package my_bundle/ --modality image --hotkey 5F...", "a bundle folder; also record the commitment the chain will hold for your hotkey"),
    ("kit package my_model.onnx --out dist/ --name v2 --force", "write dist/v2.zip, replacing an earlier one"),
]


@kit_command
def package_command(
    path: str = typer.Argument(..., help="An .onnx file, a bundle folder or a `kit build` folder."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Folder for the zip and its record (default: beside the model, in its build folder)."),
    name: Optional[str] = typer.Option(None, "--name", "-n", help="The zip's file name without .zip (default: <modality>_bundle or <modality>_detector)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="onnx or bundle, for a build folder holding both (default: bundle, what the network takes)."),
    hotkey: Optional[str] = typer.Option(None, "--hotkey", help="Your hotkey's SS58 address: adds the chain commitment to the record."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing zip and record."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Package even though the build recorded an untrained head (it scores about chance)."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="image or video (default: the spec's, else from the model)."),
    ort_min: str = typer.Option("1.22", "--ort-min", help="The validators' onnxruntime version (ONNX only)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="intra-op threads for the latency figure."),
    time_limit: float = typer.Option(120.0, "--time-limit", min=1.0, help=TIME_LIMIT_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    python: Optional[str] = typer.Option(None, "--python", help=PYTHON_HELP),
) -> None:
    """Run `kit check`, refuse on any failure (warnings never block), then write the zip and its .json record."""
    from discriminator.check import rules_for
    from discriminator.check.bundle_context import BundleRunOptions
    from discriminator.check.report import print_report
    from discriminator.package import PUSH_COST_NOTE, CheckFailedError, last_bench_exam, package_submission

    use_python(python)

    try:
        with rule_progress(max(len(rules_for(fmt)) for fmt in FORMATS)) as on_rule:
            result = package_submission(path, out_dir=out, hotkey=hotkey, force=force, modality=modality,
                                        ort_min=ort_min, threads=threads, on_rule=on_rule, format=format, name=name,
                                        allow_untrained=allow_untrained,
                                        bundle_options=BundleRunOptions(time_limit, device))
    except CheckFailedError as exc:
        print_report(exc.report, console)
        raise
    print_report(result.report, console)
    print_success(f"wrote {result.zip_path} ({result.size / 1024:.1f} KiB, {result.format}: {', '.join(result.members)})")
    print_success(f"record {result.record_path}")
    console.print(f"sha256      {result.sha256}")
    if result.commitment:
        console.print(f"commitment  {result.commitment}")
    if not FORMATS[result.format].accepted_now:
        err_console.print("[bold yellow]! the network has refused ONNX submissions since 2026-02-03: this zip is the "
                          "ONNX-era artifact (for `kit bench --profile onnx-2026-02` and your records), not one to push. "
                          "Build a bundle (`kit build … --format both`) and package it with `kit package <build folder>`.[/]")
        console.print(f"ONNX era    {result.push_command} (refused by today's network)")
    else:
        console.print(f"push with   {result.push_command}")
        console.print(f"cost        {PUSH_COST_NOTE}")
        exam = last_bench_exam([Path(path), result.zip_path], result.format)
        if exam is None:
            console.print("exam        no `kit bench` of this model with an exam verdict under results/: bench it first "
                          f"(`kit bench {path} --data <your test split> --mode small`, the exam's sample size)")
        else:
            accuracy = f", 3-class accuracy {exam.accuracy:.3f}" if exam.accuracy is not None else ""
            interval = f" [{exam.interval[0]:.3f}, {exam.interval[1]:.3f}]" if exam.interval else ""
            colour = {"pass": "green", "at risk": "yellow", "fail": "red", "incomplete": "yellow"}.get(exam.verdict, "white")
            console.print(f"exam        [{colour}]{exam.verdict}[/]{accuracy}{interval} (entrance exam: ≥ 0.80; "
                          f"last bench of this model, {exam.results_path})")
            if exam.verdict == "incomplete":
                console.print("            that bench was interrupted: bench the model to the end for a verdict")


def register(app: typer.Typer) -> None:
    app.command("package", epilog=examples_epilog(EXAMPLES))(package_command)
