"""What every `kit` command shares: error handling, help formatting, example epilogs, console output.

Only light modules are imported here and at the top of every command module:
torch, transformers, onnxruntime and onnx load inside the command that needs them,
so `kit --version`, `kit --help` and `kit models` start in a fraction of a second.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from discriminator.errors import KitError, UsageError, first_line

F = TypeVar("F", bound=Callable[..., Any])


class KitGroup(TyperGroup):
    """A command group whose command list shows each command's whole first sentence, wrapped, never cut with '...'."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


#: Settings of every `kit` Typer app. Help goes through click's plain formatter, which wraps long descriptions at
#: any width; typer's rich panels cut a word that does not fit their narrow help column with "…" (80 columns when
#: piped). 100 columns at most, fewer on a narrower terminal.
TYPER_SETTINGS: dict[str, Any] = {
    "cls": KitGroup,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"], "max_content_width": 100},
}


class Modality(str, Enum):
    """The two kinds of detector the network scores."""

    image = "image"
    video = "video"


#: Normal output goes to stdout; errors and progress go to stderr.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def debug_enabled() -> bool:
    return os.environ.get("KIT_DEBUG", "").strip() not in ("", "0", "false", "no")


def examples_epilog(examples: Sequence[tuple[str, str]]) -> str:
    """Format (command, what it does) pairs for a command's --help; each command stays on one line to copy."""
    paragraphs = ["Examples:"] + [f"  # {what}\n  {command}" for command, what in examples]
    # click rewraps every paragraph of an epilog except those that start with \b.
    return "\n\n".join(f"\b\n{paragraph}" for paragraph in paragraphs)


def fail(message: str, exit_code: int = 1) -> "typer.Exit":
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(exit_code)


def _path_error(exc: OSError) -> tuple[str, int]:
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    return f"cannot access{where}: {exc.strerror or exc} — check the path and its permissions", 2


#: What reaches a command, matched in order → (one line, exit code). A `KitError` carries its own line; anything
#: else from a miner's module, file or machine is named here; an exception in no row is a kit bug (see kit_command).
KNOWN_ERRORS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[[Any], tuple[str, int]]], ...] = (
    (KitError, lambda exc: (exc.one_line(), exc.exit_code)),
    (KeyboardInterrupt, lambda exc: ("interrupted", 130)),
    ((PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError), _path_error),
    (MemoryError, lambda exc: ("out of memory — use a smaller --height/--width, --frames or --batch-size, "
                               "or close other programs", 1)),
    (OSError, lambda exc: (f"{exc} — check the disk and the path", 2)),
)


def _user_code_location(exc: BaseException) -> str | None:
    """`file.py:line` of the innermost traceback frame in a miner's own code: outside the kit's packages, the standard
    library and installed packages. None when the exception never passed through such code."""
    import sysconfig
    import traceback

    kit_root = Path(__file__).resolve().parents[2]
    skipped = tuple(str(folder) for folder in (
        *(kit_root / package for package in ("discriminator", "validator_sim", "onnx_examples")),
        *(Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib"))))
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        filename = str(Path(frame.filename).resolve()) if not frame.filename.startswith("<") else ""
        if filename and not filename.startswith(skipped):
            return f"{frame.filename}:{frame.lineno}"
    return None


def error_line(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code `kit` prints for `exc`."""
    for types, describe in KNOWN_ERRORS:
        if isinstance(exc, types):
            return describe(exc)
    where = _user_code_location(exc)
    if where:
        return (f"your code raised {type(exc).__name__} at {where}: {first_line(exc)} — fix it there "
                "(KIT_DEBUG=1 shows the traceback)", 1)
    return (f"unexpected {type(exc).__name__}: {first_line(exc)} — this is a bug in kit: rerun with KIT_DEBUG=1 "
            "and report the traceback", 1)


def kit_command(func: F) -> F:
    """Turn every exception into one line on stderr and a non-zero exit (see KNOWN_ERRORS); KIT_DEBUG=1 raises it
    with its traceback instead."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException, SystemExit):
            raise
        except BaseException as exc:
            if debug_enabled():
                raise
            message, exit_code = error_line(exc)
            raise fail(escape(message), exit_code) from None

    wrapper.one_line_errors = True  # type: ignore[attr-defined]  # tests check every command carries it
    return wrapper  # type: ignore[return-value]


def escape(text: str) -> str:
    """`text` with rich markup escaped, for paths and names printed inside markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def print_success(message: str) -> None:
    console.print(f"[green]✓[/] {escape(message)}")


def parse_model_options(items: list[str]) -> dict:
    """`KEY=VALUE` pairs; a value is JSON if it parses, a comma list of such values, or else a string."""
    options = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--model-option {item!r} is not KEY=VALUE", "e.g. --model-option channels=8,16,32,64")
        options[key.strip()] = [_json_or_text(part) for part in raw.split(",")] if "," in raw and not raw.lstrip().startswith("[") else _json_or_text(raw)
    return options


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


PYTHON_HELP = ("Run bundles under this Python instead (e.g. your own GPU venv's bin/python); default: the evaluator's "
               "runtime when `kit runtime install` made it, else the kit's own Python.")


def use_python(python: str | None) -> None:
    """Apply `--python`: every bundle this command runs starts under that interpreter."""
    from discriminator.errors import UsageError
    from validator_sim.runtime import RuntimeSetupError, select_python

    try:
        select_python(python)
    except RuntimeSetupError as exc:
        raise UsageError(exc.message, exc.fix) from exc
