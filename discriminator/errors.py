"""Errors a user can cause, each carrying one line that says what is wrong and what to do.

The command line turns a `KitError` into that line and its exit code; every other
exception is a bug and keeps its traceback (shown in full with KIT_DEBUG=1).
"""

from __future__ import annotations


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
    """ONNX and PyTorch disagree by more than the tolerance; carries the figure."""

    def __init__(self, max_abs_diff: float, tolerance: float, where: str):
        super().__init__(
            f"ONNX and PyTorch logits differ by {max_abs_diff:.3g} (tolerance {tolerance:g}) at {where}",
            "the exported graph does not compute what the model does; rerun with KIT_DEBUG=1 and report the model",
        )
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        self.where = where


class OutputExistsError(KitError):
    """Refusing to overwrite a user's file."""

    def __init__(self, path: object):
        super().__init__(f"{path} already exists", "pass --force to overwrite it, or choose another --out")
