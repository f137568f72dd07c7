"""`kit check`: run the network-contract rules on an ONNX file, a bundle, a build folder or a submission zip."""

from __future__ import annotations

import json
import time
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
    ("kit check big_bundle/ --time-limit 600 --latency", "a large model on a CPU: more time per batch, and the full latency figure"),
]
FORMAT_HELP = "onnx or bundle: check only that one of a build folder's formats (default: every format the path holds)."
DEVICE_HELP = "Where a bundle runs: cpu, cuda or cuda:N (the evaluator uses CUDA when it has it)."
TIME_LIMIT_HELP = ("Seconds one batch of a bundle may take before the check stops it and says it ran out of time "
                   "(loading gets max(300, this)).")
LATENCY_HELP = ("Time the latency figure as the median of 3 runs at the validator's batch after a warm-up (3 extra "
                "batches). Default: read it off the one batch-32 (image) / batch-4 (video) run the batch proof makes.")


#: A rule that takes at least this long gets its own line with its time (a large model's check takes minutes).
SLOW_RULE_S = 1.0


@contextmanager
def rule_progress(total: int) -> Iterator[Callable[[Rule], None]]:
    """Progress over `total` rules on stderr; yields the per-rule callback, called as each rule starts.

    On a terminal, a bar names the rule running now; on a terminal or not, every rule that took at least
    SLOW_RULE_S gets a line with its time, so a check of a large model shows where its minutes go.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("checking [bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task("", total=total)
        running: list[tuple[str, float]] = []  # the rule running now and when it started

        def finish_running() -> None:
            if running:
                rule_id, started = running.pop()
                progress.advance(task)
                seconds = time.perf_counter() - started
                if seconds >= SLOW_RULE_S:
                    err_console.print(f"[dim]  {rule_id:<22} {seconds:7.1f} s[/]", highlight=False)

        def on_rule(rule: Rule) -> None:
            finish_running()
            progress.update(task, description=rule.id)
            running.append((rule.id, time.perf_counter()))

        try:
            yield on_rule
        finally:
            finish_running()


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
    latency: bool = typer.Option(False, "--latency", help=LATENCY_HELP),
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
                             on_rule=on_rule, bundle_options=BundleRunOptions(time_limit, device),
                             latency="full" if latency else "quick")
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
