"""`kit build`: wrap a detector for the validator's contract and export it to verified ONNX."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Filled in by the build work; registered so the app's layout is final."""
