"""Every artifact format's row (discriminator/formats.py) supplies every behaviour, and a name not in the table is
refused in one line wherever a format is named.

Parametrised over the table, so a format added to `FORMATS` is tested by being registered.
"""

from __future__ import annotations

import ast
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
#: Hooks a row may leave out (None): a behaviour some formats do not have.
OPTIONAL_HOOKS = [f.name for f in dataclasses.fields(ArtifactFormat) if f.type == "Hook | None"]
#: The table's hooks that hold a value rather than a function.
VALUE_HOOKS = {"check_rules"}


def test_the_table_has_hooks_for_every_layer() -> None:
    assert set(HOOKS) == {"plan", "emit", "verify", "install", "target", "zip_markers", "check_zip", "locate", "from_dir",
                          "read_spec", "check_rules", "check", "modality_of", "zip_members", "open_session"}
    assert OPTIONAL_HOOKS == ["from_file", "refusals"]


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_row_is_filed_under_its_own_name(name: str) -> None:
    row = FORMATS[name]
    assert row.name == name and format_row(name) is row
    assert "{modality}" in row.zip_stem and row.missing.startswith("no ")


@pytest.mark.parametrize("hook", HOOKS + OPTIONAL_HOOKS)
@pytest.mark.parametrize("name", list(FORMATS))
def test_every_row_supplies_every_behaviour(name: str, hook: str) -> None:
    target = getattr(FORMATS[name], hook)
    if target is None and hook in OPTIONAL_HOOKS:
        return
    assert isinstance(target, Hook), f"{name}.{hook} is not a Hook"
    resolved = target.resolve()
    if hook in VALUE_HOOKS:
        assert resolved and all(isinstance(rule, Rule) for rule in resolved)
    else:
        assert callable(resolved), f"{name}.{hook} → {target.target} is not callable"


@pytest.mark.parametrize("hook", sorted(set(HOOKS + OPTIONAL_HOOKS) - VALUE_HOOKS))
def test_the_formats_behave_differently(hook: str) -> None:
    """One function per format and behaviour: no row borrows another's (a copy-paste in the table)."""
    targets = [getattr(row, hook).target for row in FORMATS.values() if getattr(row, hook) is not None]
    assert len(set(targets)) == len(targets), targets


def test_one_row_reads_a_lone_file() -> None:
    """load_artifact reads a file that is not a zip as the one format whose row has `from_file`."""
    assert len([row for row in FORMATS.values() if row.from_file is not None]) == 1


def test_the_rows_say_what_their_zips_hold_and_how_errors_name_them() -> None:
    for field in ("zip_called", "zip_holds"):
        words = [getattr(row, field) for row in FORMATS.values()]
        assert all(words) and len(set(words)) == len(words), (field, words)


#: Modules that must not branch on a format's name: they ask the rows instead.
FORMAT_BLIND = ("discriminator/artifact.py", "validator_sim/opening.py")


@pytest.mark.parametrize("module", FORMAT_BLIND)
def test_a_format_is_named_only_in_its_own_functions(module: str) -> None:
    """A string that is a format's name ("onnx", "bundle") appears only inside a function named after that format:
    its hooks (onnx_from_dir, find_bundle_in_dir), its accessors on Artifact (onnx_bytes, bundle_dir) and their
    helpers (manifest_onnx_names). Anywhere else it is a branch on the format that belongs in the rows."""
    tree = ast.parse((REPO / module).read_text())
    misplaced = []

    def visit(node: ast.AST, functions: tuple[str, ...]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions = (*functions, node.name)
        if isinstance(node, ast.Constant) and node.value in FORMATS:
            if not any(node.value in function for function in functions):
                misplaced.append(f"{module}:{node.lineno} {node.value!r} in {'.'.join(functions) or 'the module'}")
        for child in ast.iter_child_nodes(node):
            visit(child, functions)

    visit(tree, ())
    assert misplaced == []


def test_the_table_imports_none_of_the_layers_it_points_into() -> None:
    """The command line reads the table to build its options: importing it loads no torch and no hook's module."""
    modules = sorted({getattr(row, hook).target.partition(":")[0] for row in FORMATS.values()
                      for hook in HOOKS + OPTIONAL_HOOKS if getattr(row, hook) is not None})
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
