"""What every `kit` command shares: error handling, example epilogs, console output."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

import typer
from rich.console import Console

from discriminator.errors import KitError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

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
    """Format (command, what it does) pairs for a command's --help."""
    lines = ["Examples:", ""]
    for command, what in examples:
        lines.append(f"  # {what}")
        lines.append(f"  {command}")
        lines.append("")
    # typer/click rewrap epilogs; \b keeps this block as written.
    return "\b\n" + "\n".join(lines)


def fail(message: str, exit_code: int = 1) -> "typer.Exit":
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(exit_code)


def kit_command(func: F) -> F:
    """Turn user-caused errors into one line on stderr and a non-zero exit; KIT_DEBUG=1 shows the traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KitError as exc:
            if debug_enabled():
                raise
            raise fail(_escape(exc.one_line()), exc.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            raise fail("interrupted", 130) from None
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError) as exc:
            if debug_enabled():
                raise
            where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            raise fail(_escape(f"cannot access{where}: {exc.strerror or exc} — check the path and its permissions"), 2) from None
        except OSError as exc:
            if debug_enabled():
                raise
            raise fail(_escape(f"{exc} — check the disk and the path"), 2) from None

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def print_success(message: str) -> None:
    console.print(f"[green]✓[/] {_escape(message)}")


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
