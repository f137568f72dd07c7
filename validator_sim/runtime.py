"""Which Python, and which library versions, a bundle is loaded and run under.

A bundle is judged by the network's evaluator (gasbench 0.11.1) in that evaluator's
own environment: the versions its `pyproject.toml` pins for the `[gpu]` extra. A
bundle that loads under the kit's transformers and not under the evaluator's is a
lost submission (transformers renamed ViT and VideoMAE attention weights between
5.2 and 5.25), so every bundle run — build verification, `kit check`, `kit bench` —
goes through one of three runtimes, chosen in this order:

* ``python`` — an interpreter the miner names with ``--python PATH`` (their own GPU venv);
* ``evaluator`` — a cached virtualenv holding exactly `EVALUATOR_PINS`, made once per
  machine by ``kit runtime install`` (torch 2.8.0 and torchvision 0.23.0 are CUDA
  builds on the package registry; they run on a CPU too);
* ``kit`` — the kit's own interpreter, when neither exists. The verdict then names
  every difference from the pins and the one command that makes the runtime.

The bundle worker (`bundle_runtime.BundleWorker`) is started with the chosen
runtime's interpreter and reports the versions it actually imported; `version_drift`
turns those into the differences a `kit check` row and `results.json` carry.

Nothing here imports torch; this module runs in the kit and reads other Pythons from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


#: The evaluator these pins come from.
EVALUATOR = "gasbench 0.11.1"
#: Where they were read (current-contract.md §3 quotes the same table).
PINS_SOURCE = "gasbench 0.11.1 pyproject.toml, optional dependencies [gpu]"
#: Libraries whose version can change whether a bundle loads or what it computes, pinned as the evaluator pins
#: them. Keys are distribution names as pip spells them.
EVALUATOR_PINS: dict[str, str] = {
    "torch": "2.8.0",
    "torchvision": "0.23.0",
    "torchaudio": "2.8.0",
    "transformers": "5.2.0",
    "timm": "1.0.25",
    "safetensors": "0.7.0",
    "einops": "0.8.2",
    "open-clip-torch": "3.3.0",
    "numpy": "2.4.2",
}
#: The evaluator's decoders (also pinned): they decide the pixels, which the kit decodes itself, so a bundle run
#: does not depend on them; the runtime holds them so that a model.py importing them loads.
EVALUATOR_DECODERS: dict[str, str] = {"av": "16.0.1", "decord": "0.6.0"}
#: Allowlisted libraries gasbench depends on without a pin: installed so a model.py that imports them loads
#: (pillow and OpenCV at the kit's own pins, the evaluator's image stack).
RUNTIME_EXTRAS: dict[str, str | None] = {
    "pillow": "12.1.1", "opencv-python-headless": "4.13.0.92", "pyyaml": None, "scipy": None,
    "scikit-image": None, "fvcore": None,
}
#: The kit's pins that make `make setup` a CPU-only venv; a different torch there means a pip install replaced it.
KIT_TORCH_PIN = "2.13.0"

RUNTIME_DIR_ENV = "KIT_RUNTIME_DIR"
MANIFEST = "runtime.json"
#: Bumped when what the runtime holds changes in a way the pins do not show (extras, layout).
RUNTIME_LAYOUT = 1

RuntimeKind = Literal["evaluator", "python", "kit"]
#: What the bundle worker imports itself, whatever the bundle: an interpreter without one of them cannot run any.
WORKER_NEEDS = ("torch", "numpy", "pyyaml")


class RuntimeSetupError(Exception):
    """Making or reading a runtime failed; `fix` says what to do."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class Runtime:
    """The interpreter a bundle runs under, and why that one."""

    kind: RuntimeKind
    python: str
    #: The evaluator runtime's folder (kind "evaluator" only).
    home: Path | None = None

    @property
    def label(self) -> str:
        return {"evaluator": f"the evaluator's runtime ({EVALUATOR} pins)",
                "python": f"--python {self.python}",
                "kit": "the kit's own environment"}[self.kind]


def base_version(version: str | None) -> str | None:
    """'2.8.0+cu128' → '2.8.0': a local build label does not change the release."""
    return version.split("+", 1)[0] if version else None


def runtime_root() -> Path:
    """The folder that holds evaluator runtimes: $KIT_RUNTIME_DIR, else the user's cache."""
    explicit = os.environ.get(RUNTIME_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache) if cache else Path.home() / ".cache") / "sn34-kit" / "runtimes"


def runtime_name() -> str:
    """One runtime per evaluator release and Python minor version (wheels are per Python)."""
    return f"{EVALUATOR.replace(' ', '-')}-py{sys.version_info.major}{sys.version_info.minor}"


def runtime_home() -> Path:
    return runtime_root() / runtime_name()


def venv_python(home: Path) -> Path:
    return home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def read_manifest(home: Path) -> dict[str, Any] | None:
    """The runtime's record of what it holds, or None when it is missing or unreadable."""
    try:
        data = json.loads((home / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_problem(manifest: dict[str, Any] | None, home: Path) -> str | None:
    """Why a runtime folder cannot be used as it is (None when it can)."""
    if manifest is None:
        return f"{home} has no readable {MANIFEST} (an interrupted install?)"
    if manifest.get("pins") != EVALUATOR_PINS or manifest.get("layout") != RUNTIME_LAYOUT:
        return f"{home} was made for other pins than {EVALUATOR}'s"
    if not venv_python(home).exists():
        return f"{home} has no Python"
    drift = version_drift(manifest.get("installed") or {})
    if drift:
        return f"{home} holds " + "; ".join(drift)
    return None


def installed_evaluator_runtime() -> Runtime | None:
    """The evaluator runtime when it is made and matches the pins, else None."""
    home = runtime_home()
    if manifest_problem(read_manifest(home), home) is None:
        return Runtime("evaluator", str(venv_python(home)), home)
    return None


#: The interpreter --python chose, kept in the environment so that processes this one starts (`kit bench --shards`)
#: run their bundles under it too.
SELECTED_PYTHON_ENV = "KIT_BUNDLE_PYTHON"


def select_python(python: str | None) -> None:
    """Run every bundle of this process (and of those it starts) under `python` (the CLI's --python); None goes
    back to the default order (the evaluator's runtime, else the kit's own Python)."""
    if python is None:
        os.environ.pop(SELECTED_PYTHON_ENV, None)
    else:
        path = python if os.sep in python else shutil.which(python)
        example = "e.g. --python ~/venvs/gpu/bin/python"
        if not path or not Path(path).exists():
            raise RuntimeSetupError(f"--python {python} does not exist", f"pass the path of a Python interpreter, {example}")
        if Path(path).is_dir():
            inside = next((c for c in (Path(path) / "bin" / "python", Path(path) / "python") if c.is_file()), None)
            hint = f"pass --python {inside}" if inside else f"pass the interpreter inside it, {example}"
            raise RuntimeSetupError(f"--python {python} is a folder, not a Python interpreter", hint)
        if not os.access(path, os.X_OK):
            raise RuntimeSetupError(f"--python {python} is not an executable program", f"pass a Python interpreter, {example}")
        python = str(Path(path).absolute())
        missing = [name for name, version in probe_python(python)["versions"].items()
                   if version is None and name in WORKER_NEEDS]
        if missing:
            raise RuntimeSetupError(f"--python {python} has no {', '.join(missing)}, which running a bundle needs",
                                    "pass a Python that has torch installed (your model's own venv), or leave --python "
                                    "out to use the evaluator's runtime")
        os.environ[SELECTED_PYTHON_ENV] = python


def current_runtime() -> Runtime:
    """The runtime a bundle run uses now: --python, else the evaluator runtime, else the kit's own Python."""
    selected = os.environ.get(SELECTED_PYTHON_ENV, "").strip()
    if selected:
        return Runtime("python", selected)
    return installed_evaluator_runtime() or Runtime("kit", sys.executable)


def version_drift(versions: dict[str, str | None]) -> list[str]:
    """Each pinned library whose installed release differs from the evaluator's, as 'torch 2.13.0+cpu (evaluator 2.8.0)'."""
    drift = []
    for name, pinned in EVALUATOR_PINS.items():
        found = versions.get(name)
        if found is None:
            drift.append(f"{name} missing (evaluator {pinned})")
        elif base_version(found) != pinned:
            drift.append(f"{name} {found} (evaluator {pinned})")
    return drift


#: Run by another interpreter: the versions it holds of the pinned libraries and whether CUDA packages are in it.
_PROBE = r"""
import importlib.metadata as md, json, sys
names = json.loads(sys.argv[1])
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
cuda = sorted(d.metadata["Name"] for d in md.distributions()
              if (d.metadata["Name"] or "").lower().startswith(("nvidia-", "triton")))
print(json.dumps({"python": sys.version.split()[0], "executable": sys.executable,
                  "versions": {n: version(n) for n in names}, "cuda_packages": cuda}))
"""


def probe_python(python: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Ask an interpreter (without importing torch) which versions of the pinned libraries it holds."""
    names = [*EVALUATOR_PINS, *EVALUATOR_DECODERS, *RUNTIME_EXTRAS]
    try:
        done = subprocess.run([python, "-I", "-c", _PROBE, json.dumps(names)], capture_output=True, text=True,
                              timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeSetupError(f"{python} could not be run ({exc})", "pass a working Python interpreter") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeSetupError(f"{python} could not report its packages ({last})", "pass a working Python interpreter")
    return json.loads(done.stdout)


def kit_environment_notes(versions: dict[str, str | None], cuda_packages: list[str]) -> list[str]:
    """What is wrong with the kit's own venv as `make setup` makes it: a replaced torch, CUDA packages."""
    notes = []
    torch_version = versions.get("torch")
    if torch_version and base_version(torch_version) != KIT_TORCH_PIN:
        notes.append(f"the kit's venv holds torch {torch_version}, not the {KIT_TORCH_PIN} CPU wheel `make setup` "
                     "pins: a pip install replaced it (`make setup` puts it back; install CUDA builds with "
                     "`kit runtime install`, which keeps them in their own venv)")
    if cuda_packages:
        shown = ", ".join(cuda_packages[:4]) + (f" and {len(cuda_packages) - 4} more" if len(cuda_packages) > 4 else "")
        notes.append(f"the kit's venv holds CUDA packages ({shown}) that `make setup` never installs")
    return notes


# ----------------------------------------------------------------------------------------------- installing


def requirement_lines() -> list[str]:
    """What `kit runtime install` asks pip for: the evaluator's pins, its decoders, and the extras."""
    lines = [f"{name}=={version}" for name, version in {**EVALUATOR_PINS, **EVALUATOR_DECODERS}.items()]
    lines += [f"{name}=={version}" if version else name for name, version in RUNTIME_EXTRAS.items()]
    return lines


def folder_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def install_runtime(force: bool = False, echo: Callable[[str], None] = print,
                    pip_output: Any = None) -> tuple[Runtime, dict[str, Any], bool]:
    """Make the evaluator runtime (idempotent). Returns the runtime, its manifest, and whether it was made now.

    The manifest is written last, once pip has finished and the interpreter imported torch: a folder without it
    (an interrupted or failed install) is never used, and is removed here or by the next install.
    """
    home = runtime_home()
    manifest = read_manifest(home)
    if not force and manifest_problem(manifest, home) is None:
        return Runtime("evaluator", str(venv_python(home)), home), manifest or {}, False
    if home.exists():
        shutil.rmtree(home)  # the kit's own cache folder for this runtime, found unusable (or --force)
    home.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        echo(f"creating a virtualenv at {home} (Python {sys.version.split()[0]})")
        _run_step([sys.executable, "-m", "venv", str(home)], "python -m venv", pip_output)
        python = str(venv_python(home))
        pins = home / "evaluator-pins.txt"
        pins.write_text("\n".join(requirement_lines()) + "\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")}
        echo(f"installing {EVALUATOR}'s pins (torch {EVALUATOR_PINS['torch']} with its CUDA libraries: several GB)")
        _run_step([python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "-c", str(pins),
                   "-r", str(pins)], "pip install", pip_output, env=env)
        echo("checking that the runtime imports torch")
        _run_step([python, "-I", "-c", "import torch, torchvision, transformers, timm, safetensors, einops, yaml; "
                   "torch.zeros(1) + 1"], "importing torch in the runtime", pip_output)
        probed = probe_python(python)
        drift = version_drift(probed["versions"])
        if drift:
            raise RuntimeSetupError("pip installed other versions than the pins: " + "; ".join(drift),
                                    "report this with the pip output above")
        manifest = {"evaluator": EVALUATOR, "source": PINS_SOURCE, "layout": RUNTIME_LAYOUT, "pins": EVALUATOR_PINS,
                    "installed": probed["versions"], "python": probed["python"],
                    "cuda_packages": probed["cuda_packages"],
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "install_seconds": round(time.monotonic() - started, 1), "bytes": folder_bytes(home)}
        (home / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return Runtime("evaluator", str(venv_python(home)), home), manifest, True


def _run_step(cmd: list[str], what: str, output: Any, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(cmd, stdout=output, stderr=subprocess.STDOUT if output is not None else None, env=env)
    except OSError as exc:
        raise RuntimeSetupError(f"{what} could not start ({exc})",
                                "check that the Python running the kit has venv and pip") from exc
    if done.returncode != 0:
        raise RuntimeSetupError(f"{what} failed with exit code {done.returncode}",
                                "read pip's message above; rerun `kit runtime install` once the cause is fixed")


def remove_runtime() -> Path | None:
    """Delete the evaluator runtime; the folder removed, or None when there was none."""
    home = runtime_home()
    if not home.exists():
        return None
    shutil.rmtree(home)
    return home


def describe_bytes(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"

