"""Every artifact format's row (discriminator/formats.py) supplies every behaviour, and a name not in the table is
refused in one line wherever a format is named.

Parametrised over the table, so a format added to `FORMATS` is tested by being registered.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discriminator.artifact import load_artifact
from discriminator.check.rules import Rule
from discriminator.cli.app import app
from discriminator.errors import UsageError
from discriminator.formats import FORMATS, ArtifactFormat, Hook, format_row, resolve_formats

REPO = Path(__file__).resolve().parents[1]
HOOKS = [f.name for f in dataclasses.fields(ArtifactFormat) if f.type in ("Hook", Hook)]
#: The table's hooks that hold a value rather than a function.
VALUE_HOOKS = {"check_rules"}


def test_the_table_has_hooks_for_every_layer() -> None:
    assert set(HOOKS) == {"plan", "emit", "verify", "install", "target", "from_dir", "read_spec", "check_rules", "check",
                          "modality_of", "zip_members", "open_session"}


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_row_is_filed_under_its_own_name(name: str) -> None:
    row = FORMATS[name]
    assert row.name == name and format_row(name) is row
    assert "{modality}" in row.zip_stem and row.missing.startswith("no ")


@pytest.mark.parametrize("hook", HOOKS)
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_row_supplies_every_behaviour(name: str, hook: str) -> None:
    target = getattr(FORMATS[name], hook)
    assert isinstance(target, Hook), f"{name}.{hook} is not a Hook"
    resolved = target.resolve()
    if hook in VALUE_HOOKS:
        assert resolved and all(isinstance(rule, Rule) for rule in resolved)
    else:
        assert callable(resolved), f"{name}.{hook} → {target.target} is not callable"


@pytest.mark.parametrize("hook", sorted(set(HOOKS) - VALUE_HOOKS))
def test_the_formats_behave_differently(hook: str) -> None:
    """One function per format and behaviour: no row borrows another's (a copy-paste in the table)."""
    targets = [getattr(row, hook).target for row in FORMATS.values()]
    assert len(set(targets)) == len(targets), targets


def test_the_table_imports_none_of_the_layers_it_points_into() -> None:
    """The command line reads the table to build its options: importing it loads no torch and no hook's module."""
    modules = sorted({getattr(row, hook).target.partition(":")[0] for row in FORMATS.values() for hook in HOOKS})
    code = ("import sys, json; import discriminator.formats; "
            f"print(json.dumps([m for m in {modules + ['torch', 'onnxruntime']!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_a_hook_names_a_missing_attribute_by_its_path() -> None:
    with pytest.raises(AttributeError, match="no_such_behaviour"):
        Hook("discriminator.formats:no_such_behaviour").resolve()


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_format_not_in_the_table_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--format 'tflite' is not one of onnx, bundle"):
        format_row("tflite")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the format is refused first")
    with pytest.raises(UsageError, match=r"--format 'tflite' is not one of onnx, bundle"):
        load_artifact(model, "tflite")
    with pytest.raises(UsageError, match=r"unknown --format 'tflite'"):
        resolve_formats("tflite", "classify")


@pytest.mark.parametrize("command", ["check", "package"])
def test_the_commands_refuse_an_unknown_format_in_one_line(tmp_path: Path, command: str) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the format is refused first")
    result = CliRunner().invoke(app, [command, str(model), "--format", "tflite"])
    assert_one_line_error(result, "--format 'tflite' is not one of onnx, bundle")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
