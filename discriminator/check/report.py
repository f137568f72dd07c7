"""Show a `CheckReport` to a person: a table of ✓ / ⚠ / ✗ rows and one summary line."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from discriminator.check.runner import CheckReport
from discriminator.formats import FORMATS

#: How each status is drawn.
STATUS_MARKS = {"pass": "[green]✓[/]", "warn": "[yellow]⚠[/]", "fail": "[bold red]✗[/]", "skip": "[dim]–[/]"}


def report_table(report: CheckReport) -> Table:
    modality = report.modality or "unknown modality"
    engine = FORMATS[report.format].check_engine.format(ort_min=report.ort_min)
    table = Table(title=f"kit check: {escape(report.source)} ({report.format}, {modality}, {engine})",
                  title_justify="left", show_lines=False)
    table.add_column("", no_wrap=True)
    table.add_column("rule", style="bold", no_wrap=True)
    table.add_column("result (and the fix, where something is wrong)")
    for result in report.results:
        text = escape(result.message)
        if result.status in ("warn", "fail"):
            text += f"\n[cyan]fix:[/] {escape(result.fix)}"
        table.add_row(STATUS_MARKS[result.status], escape(result.id), text,
                      style="dim" if result.status == "skip" else None)
    return table


def summary_line(report: CheckReport) -> str:
    counts = report.summary()
    tally = f"{counts['fail']} failed, {counts['warn']} warning(s), {counts['pass']} passed, {counts['skip']} skipped"
    if report.failed:
        ids = ", ".join(r.id for r in report.failures)
        return f"[bold red]✗ {tally}[/] — fix {escape(ids)} before `kit package` (see docs/troubleshooting.md)"
    if counts["warn"]:
        return f"[yellow]⚠ {tally}[/] — ready to package; read the warnings"
    return f"[green]✓ {tally}[/] — ready to package"


def print_report(report: CheckReport, console: Console) -> None:
    console.print(report_table(report))
    console.print(summary_line(report))
