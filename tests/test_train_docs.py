"""Every `kit train`, `kit calibrate`, `kit data` and torchrun command shown in docs/training.md and
docs/bring-your-own-detector.md parses against the real command (options exist, values have the right type).
What each route does is tested in test_train_routes.py, test_train.py and test_train_cli.py, and by `make demo`."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from discriminator.cli.app import app

DOCS = Path(__file__).resolve().parents[1] / "docs"
CHECKED = ("train", "calibrate", "data")


def documented_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name in ("training.md", "bring-your-own-detector.md"):
        text = (DOCS / name).read_text(encoding="utf-8").replace("\\\n", " ")
        fenced = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for line in re.findall(r"`([^`\n]+)`", prose) + [ln for block in fenced for ln in block.splitlines()]:
            line = line.split("#")[0].strip()
            if line.startswith("torchrun "):
                line = "kit " + line.split("-m discriminator.cli.app", 1)[-1].strip() if "-m discriminator.cli.app" in line else ""
            if not line.startswith("kit ") or "…" in line:
                continue
            args = shlex.split(line)[1:]
            if args and args[0] in CHECKED and len(args) > 2:
                commands.append((name, args))
    return commands


COMMANDS = documented_commands()


def test_the_docs_show_every_route():
    shown = " ".join(" ".join(args) for _, args in COMMANDS)
    for flag in ("--mode probe", "--task classify", "--train-last", "--classes real,ai", "--native-frames", "--profile onnx-2026-02",
                 "--from-bundle"):
        assert flag in shown, flag
    assert any("torchrun" in (DOCS / n).read_text() for n in ("training.md", "bring-your-own-detector.md"))


@pytest.mark.parametrize("doc,args", COMMANDS, ids=[" ".join(a)[:60] for _, a in COMMANDS])
def test_documented_command_parses(doc, args):
    group = typer.main.get_command(app)
    command_name, rest = args[0], args[1:]
    command = group.commands[command_name]
    if isinstance(command, click.Group):
        command, rest = command.commands[rest[0]], rest[1:]
    with click.Context(group) as parent:
        command.make_context(command_name, rest, parent=parent)  # raises click.UsageError on an unknown option or bad value
