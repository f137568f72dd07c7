"""`kit models`: list the detector sources `kit build` knows by name."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from discriminator.cli.common import console, examples_epilog, kit_command

EXAMPLES = [
    ("kit models", "every registered source"),
    ("kit models 'example-*'", "only names matching a wildcard"),
    ("kit models --modality video", "only video detectors"),
]


@kit_command
def models_command(
    pattern: Optional[str] = typer.Argument(None, help="Wildcard filter on names, e.g. 'hf-*'."),
    modality: Optional[str] = typer.Option(None, "--modality", "-m", help="Only image or only video sources."),
) -> None:
    """List the detectors `kit build --model NAME` accepts (plus hf:<id-or-dir> and py:<module>:<factory>)."""
    from discriminator.registry import list_sources

    table = Table(title="Registered detector sources", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("modality")
    table.add_column("weights")
    table.add_column("description")
    for entry in list_sources(pattern, modality):
        table.add_row(entry.name, entry.modality, entry.weights, entry.description)
    console.print(table)
    console.print("Also: [bold]hf:<hub-id-or-local-dir>[/] (any Hugging Face model) and "
                  "[bold]py:<module-or-file.py>:<factory>[/] (your own nn.Module, weights via --weights).")


def register(app: typer.Typer) -> None:
    app.command("models", epilog=examples_epilog(EXAMPLES))(models_command)
