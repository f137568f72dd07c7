"""Make torchvision importable under a torch it was not built for (the kit's CPU venv). Standard library only.

The package registry's torchvision wheels are CUDA builds. Under the CPU-only torch of
the same release (what `make setup` installs) their compiled `_C` extension does not
load, which torchvision tolerates — its detection ops then raise when called — except
for two fake-kernel registrations that need the `nms`/`qnms` operators to exist, so
`import torchvision` fails, and with it timm, open_clip and transformers' image models.

`install()` puts a finder first on `sys.meta_path` that, the first time anything
imports torchvision, tries to load the extension and, when it cannot, declares those
two schemas; then it steps aside. Under a torch the wheel was built for (the
evaluator's runtime, a miner's CUDA venv) the extension loads and nothing else happens.
`make setup` imports this module from a `.pth` file in the kit's venv, so every Python
started there (a miner's own script, the bundle worker) gets it; torch is imported only
when torchvision is.

It is a top-level module, not part of the kit's packages, because the bundle worker
refuses imports of the kit (a bundle must never depend on it).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

#: Set when the schemas had to be declared: what a report can say about this Python's torchvision.
note: str | None = None


def prepare() -> str | None:
    """Declare the missing operator schemas if torchvision's extension cannot load here; the note, or None."""
    global note
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.origin or "torchvision" in sys.modules:
        return None
    import torch

    folder = Path(spec.origin).parent
    extension = next(folder.glob("_C*.so"), None) or next(folder.glob("_C*.pyd"), None)
    if extension is None:
        return None
    try:
        torch.ops.load_library(str(extension))
        return None
    except (OSError, RuntimeError):
        pass
    for op in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass  # already declared
    note = (f"torchvision's compiled ops do not load against torch {torch.__version__} (a build for another torch): "
            "its models and transforms work, its detection ops (nms, roi_align…) raise")
    return note


class _PrepareOnImport:
    """Runs `prepare` the first time torchvision is imported, then leaves `sys.meta_path`."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torchvision":
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            prepare()
        return None


def install() -> None:
    """Arrange for `prepare` to run before torchvision is first imported, without importing torch now."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _PrepareOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PrepareOnImport())
