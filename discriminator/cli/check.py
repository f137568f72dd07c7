"""`kit check`: run the network-contract rules on an ONNX file, a bundle, a build folder or a submission zip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Optional

import typer

from discriminator.cli.common import PYTHON_HELP, console, err_console, examples_epilog, kit_command, use_python

if TYPE_CHECKING:  # the rule table imports numpy and onnx: only a running check loads it
    from discriminator.check.rules import Rule

EXAMPLES = [
    ("kit check submissions/example-video/", "check a `kit build` folder: its bundle and its ONNX twin, each against its own rules"),
    ("kit check submissions/example-video/bundle --modality video", "check a bundle folder (model_config.yaml + model.py + weights)"),
    ("kit check my_model.onnx --modality video", "check any ONNX file, saying what it is"),
    ("kit check submissions/example-video/video_bundle.zip", "check a submission zip exactly as it will be uploaded"),
    ("kit check model.onnx --json > check.json", "machine-readable results; exit 1 when a rule fails"),
    ("kit check someone_elses_bundle/ --modality image --python ~/gpu-venv/bin/python", "run a bundle under another Python"),
]
FORMAT_HELP = "onnx or bundle: check only that one of a build folder's formats (default: every format the path holds)."
DEVICE_HELP = "Where a bundle runs: cpu, cuda or cuda:N (the evaluator uses CUDA when it has it)."
TIME_LIMIT_HELP = "Seconds one batch of a bundle may take before it is called hung (loading gets max(300, this))."


@contextmanager
def rule_progress(total: int) -> Iterator[Callable[[Rule], None]]:
    """A progress bar over `total` rules (on stderr, only on a terminal); yields the per-rule callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("checking [bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task("", total=total)
        done = [0]

        def on_rule(rule: Rule) -> None:
            progress.update(task, description=rule.id, completed=done[0])
            done[0] += 1

        yield on_rule


@kit_command
def check_command(
    path: str = typer.Argument(..., help="An .onnx file, a bundle folder, a `kit build` folder, or a submission .zip."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="image or video (default: the spec's, else from the input rank or model_config.yaml)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help=FORMAT_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON (one report, or {ok, reports} for several formats)."),
    ort_min: str = typer.Option("1.22", "--ort-min", help="The validators' onnxruntime version (sets the opset and IR limits)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="intra-op threads for the latency figure (default: all cores)."),
    time_limit: float = typer.Option(120.0, "--time-limit", min=1.0, help=TIME_LIMIT_HELP),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    python: Optional[str] = typer.Option(None, "--python", help=PYTHON_HELP),
) -> None:
    """Catch every contract mistake before pushing. Exit 0: nothing fails; 1: a rule fails; 2: unreadable input.

    A bundle is loaded and run in a separate Python as the evaluator loads it: the evaluator's runtime
    (`kit runtime install`) when it is there, and its `runtime` row names every library version that differs.
    """
    from discriminator import __version__
    from discriminator.artifact import formats_in
    from discriminator.check import rules_for, run_checks
    from discriminator.check.bundle_context import BundleRunOptions
    from discriminator.check.report import print_report

    use_python(python)
    formats = (format,) if format else formats_in(path)
    with rule_progress(sum(len(rules_for(f)) for f in formats)) as on_rule:
        reports = run_checks(path, format=format, modality=modality, ort_min=ort_min, threads=threads,
                             on_rule=on_rule, bundle_options=BundleRunOptions(time_limit, device))
    failed = any(report.failed for report in reports)
    if json_output:
        payload = reports[0].to_dict() if len(reports) == 1 else {
            "kit_version": __version__, "source": path, "ok": not failed, "reports": [r.to_dict() for r in reports]}
        typer.echo(json.dumps(payload, indent=2, allow_nan=False))
    else:
        for report in reports:
            print_report(report, console)
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("check", epilog=examples_epilog(EXAMPLES))(check_command)
