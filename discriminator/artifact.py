"""Find the model (and its spec, when the kit built it) in whatever path a miner gives.

Two things are kept apart: the *container* (what the path is: a file, a folder, a
`kit build` folder, a zip) and the *format* of the model inside it:

* `onnx` — one `.onnx` file (the ONNX-era submission; the kit's fast local engine);
* `bundle` — `model_config.yaml` + `model.py` + the weights file (`model.safetensors`
  unless `model.weights_file` says otherwise), optional `config.json`: what the network
  takes today (current-contract §1).

A `kit build` folder may hold both (the ONNX file at its root, the bundle in `bundle/`,
both recorded in `manifest.json`); the caller chooses with `format`. A bundle zip
takes its spec from the `kit package` record beside it when that record is of the
same zip (a bundle's YAML need not say image or video). Zips are read
defensively: members with absolute paths, `..`, symlinks, encryption or an implausible
compression ratio are refused before anything is extracted, and a zip must hold exactly
one format at its root.

What tells the formats apart lives in their rows (discriminator/formats.py), not here: which
names mark a zip as a format and what makes such a zip whole (`zip_markers`, `check_zip`),
where a folder keeps a format's model (`locate`), and which format a lone file is (`from_file`).
The functions named after a format below are those hooks, or the accessors its hooks use.

No torch import: `kit check`, `kit package` and `kit bench` all read artifacts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from discriminator.errors import InputError, UsageError
from discriminator.formats import BUNDLE_DIR, FORMAT_WHEN_BOTH, FORMATS, format_row
from discriminator.spec import MANIFEST_NAME, DetectorSpec, read_manifest, spec_from_onnx

#: Uncompressed/compressed ratio above which a member is treated as a zip bomb. ONNX and safetensors
#: weights compress to 0.9x at best; a graph of constants rarely beyond 20x.
MAX_COMPRESSION_RATIO = 100
#: Uncompressed size above which a member is refused outright (the network's models are far smaller).
MAX_MEMBER_BYTES = 8 * 1024**3

#: The bundle's files (current-contract §1–§2; the same names as validator_sim/bundle_runtime.py).
BUNDLE_CONFIG = "model_config.yaml"
BUNDLE_MODEL = "model.py"
BUNDLE_DEFAULT_WEIGHTS = "model.safetensors"
BUNDLE_OPTIONAL = ("config.json",)
#: `kit build`'s ONNX file names (legacy folders without an `artifacts` manifest section).
ONNX_DETECTOR_STEMS = ("video_detector", "image_detector")
#: What a zip refusal tells the user to do.
PACKAGE_HINT = "package the model with `kit package`"


@dataclass
class Artifact:
    """A model located on disk or inside a zip, plus what the kit knows about it."""

    source: Path  # what the user pointed at
    container: str  # "file" | "directory" | "build-dir" | "zip"
    format: str  # "onnx" | "bundle"
    #: The files a submission of this model consists of, by name (for a zip: every file in it).
    members: dict[str, bytes]
    spec: DetectorSpec | None
    manifest: dict | None = None
    #: The folder on disk that holds the members (None inside a zip).
    location: Path | None = None
    #: Other files in a bundle folder: the evaluator ignores them and `kit package` leaves them out.
    extra_files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def onnx_name(self) -> str:
        self._require("onnx")
        return next(iter(self.members))

    @property
    def onnx_bytes(self) -> bytes:
        self._require("onnx")
        return next(iter(self.members.values()))

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX file on disk, when there is one (not for zips)."""
        return self.location / self.onnx_name if self.location is not None else None

    def _require(self, fmt: str) -> None:
        if self.format != fmt:
            raise UsageError(f"{self.source} holds a {self.format} model, not {fmt}",
                             f"pass --format {fmt} (a build folder holding both), or point at the {fmt} model")

    @contextmanager
    def bundle_dir(self) -> Iterator[Path]:
        """A folder holding the bundle as the evaluator would load it: the folder itself, or the zip's members unpacked."""
        self._require("bundle")
        if self.location is not None:
            yield self.location
            return
        folder = Path(tempfile.mkdtemp(prefix="kit-bundle-"))
        try:
            for name, data in self.members.items():
                (folder / name).write_bytes(data)
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def check_zip_members(zf: zipfile.ZipFile, zip_path: Path) -> list[zipfile.ZipInfo]:
    """Refuse unsafe members; return the regular file members."""
    files = []
    for info in zf.infolist():
        name = info.filename
        posix = PurePosixPath(name.replace("\\", "/"))
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise InputError(f"{zip_path}: member {name!r} has an absolute path", "rebuild the zip with `kit package`")
        if ".." in posix.parts:
            raise InputError(f"{zip_path}: member {name!r} climbs out of the archive with '..'", "rebuild the zip with `kit package`")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InputError(f"{zip_path}: member {name!r} is a symbolic link", "put the real file in the zip, or use `kit package`")
        if info.flag_bits & 0x1:
            raise InputError(f"{zip_path}: member {name!r} is encrypted", "the validator cannot open encrypted zips; use `kit package`")
        if info.is_dir():
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            raise InputError(f"{zip_path}: member {name!r} unpacks to {info.file_size / 1024**3:.1f} GiB", "that is not a detector; check the archive")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1024**2 and ratio > MAX_COMPRESSION_RATIO:
            raise InputError(f"{zip_path}: member {name!r} expands {ratio:.0f}x (looks like a zip bomb)", "check where this archive came from")
        files.append(info)
    return files


def read_zip_members(zip_path: Path) -> dict[str, bytes]:
    """Every regular file of a zip, by name, after the safety checks; a member inside a folder is refused."""
    return _open_zip(zip_path, read=True)


def zip_member_names(zip_path: Path) -> list[str]:
    """The names `read_zip_members` would return, after the same checks, without decompressing anything."""
    return list(_open_zip(zip_path, read=False))


def _open_zip(zip_path: Path, read: bool) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            files = check_zip_members(zf, zip_path)
            for info in files:
                if "/" in info.filename.replace("\\", "/").strip("/"):
                    raise InputError(f"{zip_path}: {info.filename!r} is inside a folder; submission files must sit at "
                                     "the zip root", "package the model with `kit package`")
            return {info.filename: zf.read(info) if read else b"" for info in files}
    except zipfile.BadZipFile as exc:
        raise InputError(f"{zip_path} is not a readable zip ({exc})", "re-create it with `kit package`") from exc
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError) as exc:
        raise InputError(f"{zip_path} cannot be read ({exc or type(exc).__name__})", "re-create it with `kit package`") from exc


def sniff_zip_format(zip_path: Path, names: list[str]) -> str:
    """Which format a zip's root files are: the one whose row's `zip_markers` claim them, after its `check_zip`."""
    marked = {name: markers for name, row in FORMATS.items() if (markers := row.zip_markers(names))}
    if len(marked) > 1:
        mixed = " and ".join(f"{FORMATS[name].zip_called} ({markers[0]})" for name, markers in marked.items())
        raise InputError(f"{zip_path} mixes {mixed}; a submission is one or the other",
                         f"package each with `kit package --format {'|'.join(FORMATS)}`")
    if not marked:
        holds = " nor ".join(row.zip_holds for row in FORMATS.values())
        raise InputError(f"{zip_path} holds neither {holds}; found {len(names)} file(s): {_listing(names)}",
                         PACKAGE_HINT)
    found, markers = next(iter(marked.items()))
    FORMATS[found].check_zip(zip_path, names, markers)
    return found


def _listing(names: list[str]) -> str:
    """A zip's first few member names, for an error."""
    return ", ".join(names[:5]) + (" …" if len(names) > 5 else "") or "nothing"


def onnx_zip_markers(names: list[str]) -> list[str]:
    """The `.onnx` files among a zip's root files (the onnx row's `zip_markers`)."""
    return [n for n in names if n.lower().endswith(".onnx")]


def check_onnx_zip(zip_path: Path, names: list[str], markers: list[str]) -> None:
    """An ONNX submission zip holds its one `.onnx` file and nothing else (the onnx row's `check_zip`)."""
    if len(names) != 1:
        raise InputError(f"{zip_path}: a submission zip must hold exactly one .onnx file, found {len(names)} "
                         f"file(s): {_listing(names)}", PACKAGE_HINT)


def bundle_zip_markers(names: list[str]) -> list[str]:
    """model_config.yaml and model.py, those of them a zip holds (the bundle row's `zip_markers`)."""
    return [n for n in (BUNDLE_CONFIG, BUNDLE_MODEL) if n in names]


def check_bundle_zip(zip_path: Path, names: list[str], markers: list[str]) -> None:
    """A bundle zip holds both model_config.yaml and model.py (the bundle row's `check_zip`); the weights are checked
    by `kit check`'s rules."""
    missing = [n for n in (BUNDLE_CONFIG, BUNDLE_MODEL) if n not in names]
    if missing:
        raise InputError(f"{zip_path} holds {markers[0]} but no {missing[0]}: a bundle needs "
                         f"{BUNDLE_CONFIG}, {BUNDLE_MODEL} and the weights file at the zip root", PACKAGE_HINT)


def find_onnx_in_dir(directory: Path, manifest: dict | None = None) -> Path | None:
    """The ONNX detector in a folder: the manifest's file, else a kit-named or the only `.onnx` there; None if none."""
    for name in manifest_onnx_names(manifest):
        if (directory / name).is_file():
            return directory / name
    candidates = sorted(p for p in directory.glob("*.onnx") if p.is_file())
    detectors = [p for p in candidates if p.stem in ONNX_DETECTOR_STEMS]
    if len(detectors) == 1:
        return detectors[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return None
    raise InputError(f"{directory} holds {len(candidates)} .onnx files", "pass the one you mean as a file path")


def manifest_onnx_names(manifest: dict | None) -> list[str]:
    """The ONNX files a build manifest records (`artifacts.onnx.files`, or the older `onnx_file`)."""
    if manifest is None:
        return []
    recorded = ((manifest.get("artifacts") or {}).get("onnx") or {}).get("files") or {}
    names = list(recorded) or ([manifest["onnx_file"]] if manifest.get("onnx_file") else [])
    return [name for name in names if str(name).endswith(".onnx")]


def locate_onnx(directory: Path, manifest: dict | None = None) -> Path | None:
    """The ONNX model a folder holds (the onnx row's `locate`): none in a folder that is itself a bundle (a `.onnx`
    beside a bundle's files is not a second model), else `find_onnx_in_dir`'s."""
    return None if _looks_like_bundle(directory) else find_onnx_in_dir(directory, manifest)


def find_bundle_in_dir(directory: Path, manifest: dict | None = None) -> Path | None:
    """The bundle folder (the bundle row's `locate`): `directory` itself when it holds model_config.yaml or model.py,
    else the build's `bundle/`."""
    if _looks_like_bundle(directory):
        return directory
    named = ((manifest or {}).get("artifacts") or {}).get("bundle") or {}
    sub = directory / str(named.get("dir") or BUNDLE_DIR)
    return sub if sub.is_dir() and _looks_like_bundle(sub) else None


def formats_in(path: Path | str) -> tuple[str, ...]:
    """The formats `path` holds, in FORMATS order (a build folder may hold both); reads no model bytes from a zip."""
    path = Path(path)
    if not path.is_dir():
        if path.is_file() and zipfile.is_zipfile(path):
            return (sniff_zip_format(path, zip_member_names(path)),)
        return (load_artifact(path).format,)
    manifest = _manifest_of(path)
    return tuple(name for name, row in FORMATS.items() if row.locate(path, manifest) is not None)


def load_artifact(path: Path | str, format: str | None = None) -> Artifact:
    """Locate and read the model at `path` (file, bundle folder, build folder or zip); `format` picks one of a build's two."""
    path = Path(path)
    if format is not None:
        format_row(format)
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the path, or run `kit build` to create a model")
    if path.is_dir():
        artifact = _load_from_dir(path, format)
    elif zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        members = read_zip_members(path)
        found = sniff_zip_format(path, list(members))
        _require_format(path, found, format)
        artifact = Artifact(source=path, container="zip", format=found, members=members, spec=None)
    else:
        for row in FORMATS.values():
            if row.from_file is None and row.zip_markers([path.name]):
                raise UsageError(f"{path} is one file of {row.zip_called}",
                                 f"point at the folder that holds it: {path.parent}")
        found = next(name for name, row in FORMATS.items() if row.from_file is not None)
        _require_format(path, found, format)
        artifact = FORMATS[found].from_file(path)
    artifact.spec = FORMATS[artifact.format].read_spec(artifact)
    return artifact


def _load_from_dir(directory: Path, format: str | None) -> Artifact:
    manifest = _manifest_of(directory)
    located = {name: row.locate(directory, manifest) for name, row in FORMATS.items()}
    available = [f for f, found in located.items() if found is not None]
    if not available:
        raise InputError(f"{directory} holds {' and '.join(row.missing for row in FORMATS.values())}",
                         "run `kit build` into it first, or pass the model itself")
    if format is not None and format not in available:
        raise InputError(f"{directory} holds {FORMATS[format].missing}", f"build it with `kit build --format {format}`, "
                                                                        f"or pass --format {available[0]}")
    chosen = format or (available[0] if len(available) == 1 else FORMAT_WHEN_BOTH)
    # A folder that is itself the model (a bundle folder) is a "directory", even with a manifest.
    container = "build-dir" if manifest is not None and located[chosen] != directory else "directory"
    return FORMATS[chosen].from_dir(directory, located[chosen], container, manifest)


def onnx_from_dir(directory: Path, onnx_path: Path, container: str, manifest: dict | None) -> Artifact:
    """The ONNX model `onnx_path` a folder holds (the onnx row's `from_dir`)."""
    return Artifact(source=directory, container=container, format="onnx",
                    members={onnx_path.name: _read_bytes(onnx_path)}, spec=None, manifest=manifest, location=directory)


def onnx_from_file(path: Path) -> Artifact:
    """A lone ONNX file (the onnx row's `from_file`), with the build manifest beside it when that records this file."""
    artifact = Artifact(source=path, container="file", format="onnx", members={path.name: _read_bytes(path)},
                        spec=None, location=path.parent)
    sibling = path.parent / MANIFEST_NAME
    if sibling.is_file():
        candidate = read_manifest(sibling)
        if path.name in manifest_onnx_names(candidate) or not manifest_onnx_names(candidate):
            artifact.manifest = candidate
    return artifact


def bundle_from_dir(directory: Path, bundle: Path, container: str, manifest: dict | None) -> Artifact:
    """The bundle in folder `bundle` (`directory` itself or its `bundle/`) (the bundle row's `from_dir`)."""
    if bundle == directory and manifest is None:  # a bundle folder inside a build folder: its manifest is the parent's
        parent_manifest = _manifest_of(directory.parent)
        if parent_manifest is not None and find_bundle_in_dir(directory.parent, parent_manifest) == directory:
            manifest = parent_manifest
    members, extra = _bundle_members(bundle)
    return Artifact(source=directory, container=container, format="bundle", members=members, spec=None,
                    manifest=manifest, location=bundle, extra_files=extra)


def _bundle_members(folder: Path) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """The files a bundle submission holds (config, model.py, the named weights, config.json) and the rest of the folder."""
    files = sorted(p.name for p in folder.iterdir() if p.is_file() or p.is_symlink())
    weights = bundle_weights_name((folder / BUNDLE_CONFIG).read_bytes()) if (folder / BUNDLE_CONFIG).is_file() else None
    wanted = {BUNDLE_CONFIG, BUNDLE_MODEL, weights or BUNDLE_DEFAULT_WEIGHTS, *BUNDLE_OPTIONAL}
    members = {name: _read_bytes(folder / name) for name in files if name in wanted}
    extra = tuple(name for name in sorted(p.name for p in folder.iterdir()) if name not in members)
    return members, extra


def bundle_weights_name(config_bytes: bytes) -> str:
    """The weights file a model_config.yaml names (`model.weights_file`), else the default; a broken YAML gives the default."""
    import yaml

    try:
        raw = yaml.safe_load(config_bytes.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return BUNDLE_DEFAULT_WEIGHTS
    model = raw.get("model") if isinstance(raw, dict) else None
    named = model.get("weights_file") if isinstance(model, dict) else None
    return named if isinstance(named, str) and named and "/" not in named else BUNDLE_DEFAULT_WEIGHTS


def _recorded_spec(zip_path: Path) -> DetectorSpec | None:
    """The spec in the `kit package` record beside a zip (`<zip>.json`), when the record is of this very zip."""
    record_path = zip_path.with_name(zip_path.name + ".json")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
        return None
    if record.get("zip_sha256") != hashlib.sha256(zip_path.read_bytes()).hexdigest():
        return None
    try:
        return DetectorSpec.from_dict(record["spec"])
    except (InputError, TypeError, ValueError):
        return None


def _looks_like_bundle(folder: Path) -> bool:
    return (folder / BUNDLE_CONFIG).is_file() or (folder / BUNDLE_MODEL).is_file()


def _manifest_of(directory: Path) -> dict | None:
    return read_manifest(directory / MANIFEST_NAME) if (directory / MANIFEST_NAME).is_file() else None


def _require_format(path: Path, found: str, wanted: str | None) -> None:
    if wanted is not None and wanted != found:
        raise UsageError(f"{path} holds a {found} model, not {wanted}", f"drop --format, or pass --format {found}")


def bundle_spec(artifact: Artifact) -> DetectorSpec | None:
    """A bundle's spec (the bundle row's `read_spec`): its build's manifest, else for a zip the `kit package` record
    beside it (a bundle's YAML need not say image or video)."""
    if artifact.manifest is not None:
        return DetectorSpec.from_dict(artifact.manifest["spec"])
    return _recorded_spec(artifact.source) if artifact.container == "zip" else None


def onnx_spec(artifact: Artifact) -> DetectorSpec | None:
    """An ONNX model's spec (the onnx row's `read_spec`): its metadata, else its build's manifest."""
    data = artifact.onnx_bytes
    if not data:
        raise InputError(f"{artifact.source} is empty (0 bytes)", "rebuild the model with `kit build`")
    try:
        spec = spec_from_onnx(data)
    except InputError as exc:  # name the file the user gave, not "model bytes"
        label = str(artifact.source) if artifact.container != "zip" else f"{artifact.source} ({artifact.onnx_name})"
        raise InputError(exc.message.replace("model bytes", label, 1), exc.hint) from exc
    if spec is None and artifact.manifest is not None:
        spec = DetectorSpec.from_dict(artifact.manifest["spec"])
    return spec


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror})", "check the path and its permissions") from exc
