"""Errors a user can cause, each carrying one line that says what is wrong and what to do.

The command line turns a `KitError` into that line and its exit code; other exceptions
from a miner's module, file or machine become one line too (`KNOWN_ERRORS` in
cli/common.py), and one it does not know is reported as a kit bug. KIT_DEBUG=1 shows
the traceback instead.
"""

from __future__ import annotations

#: Longest piece of a foreign exception's text quoted in a one-line error.
QUOTE_LIMIT = 200


class KitError(Exception):
    """A problem the user can fix. `hint` is the next step; `exit_code` is what `kit` exits with."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UsageError(KitError):
    """Bad option, unknown name, or a file where a folder was expected."""

    exit_code = 2


class InputError(KitError):
    """A file that cannot be read at all: missing, empty, corrupt, not what it claims to be."""

    exit_code = 2


class HubUnreachableError(KitError):
    """A Hugging Face id was asked for and the hub could not be reached."""

    exit_code = 3


class ExportError(KitError):
    """The exporter failed or wrote a graph that breaks the contract."""


class ParityError(ExportError):
    """Two runs of the same detector (ONNX vs PyTorch, bundle vs PyTorch, bundle vs ONNX) disagree past the
    tolerance; carries the figure and what was compared."""

    def __init__(self, max_abs_diff: float, tolerance: float, where: str, compared: str = "ONNX and PyTorch",
                 quantity: str = "logits"):
        super().__init__(
            f"{compared} {quantity} differ by {max_abs_diff:.3g} (tolerance {tolerance:.3g}) at {where}",
            "the written artifact does not compute what the model does; rerun with KIT_DEBUG=1 and report the model",
        )
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        self.where = where
        self.compared = compared


class OutputExistsError(KitError):
    """Refusing to overwrite a user's file."""

    def __init__(self, path: object):
        super().__init__(f"{path} already exists", "pass --force to overwrite it, or choose another --out")


def first_line(exc: BaseException, limit: int = QUOTE_LIMIT) -> str:
    """The first non-empty line of a foreign exception's text, cut at a word boundary (with …) past `limit`."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(",;:") + "…"
