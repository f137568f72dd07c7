"""A Python without the kit, for proving that bundles stand alone.

`minimal_python(tmp)` makes a venv whose only packages are torch, transformers,
safetensors, numpy and pyyaml and what they need (resolved from the installed
distributions' metadata), linked from this environment's site-packages. The
kit's editable install is not among them, so `model.py` cannot reach
`discriminator`, `validator_sim` or `onnx_examples` there, even by accident.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
import venv
from pathlib import Path

#: What the issue names as the evaluator-like environment.
BUNDLE_RUNTIME_PACKAGES = ("torch", "transformers", "safetensors", "numpy", "pyyaml")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(roots: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions `roots` need (required dependencies only, no extras)."""
    from packaging.requirements import Requirement

    seen: dict[str, metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        name = _normalise(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional platform dependency that is not installed here
        seen[name] = dist
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            todo.append(requirement.name)
    return list(seen.values())


def minimal_python(root: Path) -> Path:
    """A venv at `root` holding only the bundle runtime packages; returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    packages = root / "linked-site"
    packages.mkdir()
    for dist in dependency_closure(BUNDLE_RUNTIME_PACKAGES):
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if top.endswith(".pth") or top == "__pycache__":
                continue
            source, target = base / top, packages / top
            if source.exists() and not target.exists():
                target.symlink_to(source)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "linked.pth").write_text(str(packages) + "\n")
    return python


def can_import(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-I", "-c", f"import {module}"], capture_output=True).returncode == 0


if __name__ == "__main__":
    print(minimal_python(Path(sys.argv[1])))
