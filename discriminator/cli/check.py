"""`kit check`: run the validator-contract rules on an ONNX file, build folder or submission zip."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from discriminator.check.rules import RULES, Rule
from discriminator.cli.common import console, err_console, examples_epilog, kit_command

EXAMPLES = [
    ("kit check submissions/example-video/", "check a `kit build` folder (the spec is compared too)"),
    ("kit check my_model.onnx --modality video", "check any ONNX file, saying what it is"),
    ("kit check submissions/example-video/video_detector.zip", "check a submission zip exactly as it will be uploaded"),
    ("kit check model.onnx --json > check.json", "machine-readable results; exit 1 when a rule fails"),
]


@contextmanager
def rule_progress() -> Iterator[Callable[[Rule], None]]:
    """A progress bar over the rule table (on stderr, only on a terminal); yields the per-rule callback."""
    with Progress(TextColumn("checking [bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task("", total=len(RULES))
        position = {rule.id: index for index, rule in enumerate(RULES)}

        def on_rule(rule: Rule) -> None:
            progress.update(task, description=rule.id, completed=position[rule.id])

        yield on_rule


@kit_command
def check_command(
    path: str = typer.Argument(..., help="An .onnx file, a `kit build` folder, or a submission .zip."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="image or video (default: the spec's, else from the input rank)."),
    json_output: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    ort_min: str = typer.Option("1.22", "--ort-min", help="The validators' onnxruntime version (sets the opset and IR limits)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="intra-op threads for the latency figure (default: all cores)."),
) -> None:
    """Catch every contract mistake before pushing. Exit 0: nothing fails; 1: a rule fails; 2: unreadable input."""
    from discriminator.check import run_check
    from discriminator.check.report import print_report

    with rule_progress() as on_rule:
        report = run_check(path, modality=modality, ort_min=ort_min, threads=threads, on_rule=on_rule)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print_report(report, console)
    raise typer.Exit(1 if report.failed else 0)


def register(app: typer.Typer) -> None:
    app.command("check", epilog=examples_epilog(EXAMPLES))(check_command)
