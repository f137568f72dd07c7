"""`kit models`: list the detector sources `kit build` knows by name."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from discriminator.cli.common import Modality, console, examples_epilog, kit_command
from discriminator.errors import UsageError

EXAMPLES = [
    ("kit models", "every registered source"),
    ("kit models 'example-*'", "only names matching a wildcard"),
    ("kit models --modality video", "only video detectors"),
]


@kit_command
def models_command(
    pattern: Optional[str] = typer.Argument(None, help="Wildcard filter on names, e.g. 'hf-*'."),
    modality: Optional[Modality] = typer.Option(None, "--modality", "-m", help="Only image or only video sources."),
) -> None:
    """List the detectors `kit build --model NAME` accepts (plus hf:<id-or-dir> and py:<module>:<factory>)."""
    from discriminator.registry import list_sources

    entries = list_sources(pattern, modality.value if modality else None)
    if not entries:
        wanted = " ".join(filter(None, (repr(pattern) if pattern else None, f"for {modality.value}" if modality else None)))
        raise UsageError(f"no registered source matches {wanted}", "run `kit models` to list every name")
    table = Table(title="Registered detector sources", show_lines=False)
    # A name is never split (it is what --model takes); the other cells fold rather than end in "…".
    table.add_column("name", style="bold", no_wrap=True, min_width=max(len(entry.name) for entry in entries))
    for column in ("modality", "weights", "description"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(entry.name, entry.modality, entry.weights, entry.description)
    console.print(table)
    console.print("Also: [bold]hf:<hub-id-or-local-dir>[/] (any Hugging Face model) and "
                  "[bold]py:<module-or-file.py>:<factory>[/] (your own nn.Module, weights via --weights).")


def register(app: typer.Typer) -> None:
    app.command("models", epilog=examples_epilog(EXAMPLES))(models_command)
