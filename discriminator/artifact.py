"""Find the ONNX model (and its spec, when the kit built it) in whatever path a miner gives.

A path may be an `.onnx` file, a `kit build` output folder, or a submission zip.
Zips are read defensively: a submission holds exactly one `.onnx` member at the
root, and members with absolute paths, `..`, symlinks, encryption or an
implausible compression ratio are refused before anything is extracted.

No torch import: `kit check`, `kit package` and `kit bench` all read artifacts.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from discriminator.errors import InputError
from discriminator.spec import MANIFEST_NAME, DetectorSpec, read_manifest, spec_from_onnx

#: Uncompressed/compressed ratio above which a member is treated as a zip bomb. ONNX weights
#: compress to 0.9x at best; a graph of constants rarely beyond 20x.
MAX_COMPRESSION_RATIO = 100
#: Uncompressed size above which a member is refused outright (the network's models are far smaller).
MAX_MEMBER_BYTES = 8 * 1024**3


@dataclass
class Artifact:
    """An ONNX model located on disk or inside a zip, plus what the kit knows about it."""

    source: Path  # what the user pointed at
    kind: str  # "onnx" | "build-dir" | "zip"
    onnx_name: str
    onnx_bytes: bytes
    spec: DetectorSpec | None
    manifest: dict | None = None

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX file on disk, when there is one (not for zips)."""
        if self.kind == "onnx":
            return self.source
        if self.kind == "build-dir":
            return self.source / self.onnx_name
        return None


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


def read_single_onnx_from_zip(zip_path: Path) -> tuple[str, bytes]:
    """The one `.onnx` member of a submission zip, as (name, bytes)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            files = check_zip_members(zf, zip_path)
            names = [f.filename for f in files]
            onnx_members = [f for f in files if f.filename.lower().endswith(".onnx")]
            if len(files) != 1 or len(onnx_members) != 1:
                listing = ", ".join(names[:5]) + (" …" if len(names) > 5 else "") or "nothing"
                raise InputError(
                    f"{zip_path}: a submission zip must hold exactly one .onnx file, found {len(files)} file(s): {listing}",
                    "package the model with `kit package`",
                )
            member = onnx_members[0]
            if "/" in member.filename.strip("/"):
                raise InputError(f"{zip_path}: {member.filename!r} is inside a folder; the .onnx must sit at the zip root",
                                 "package the model with `kit package`")
            data = zf.read(member)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{zip_path} is not a readable zip ({exc})", "re-create it with `kit package`") from exc
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, zlib.error, EOFError) as exc:
        raise InputError(f"{zip_path} cannot be read ({exc or type(exc).__name__})", "re-create it with `kit package`") from exc
    return member.filename, data


def find_onnx_in_dir(directory: Path) -> Path:
    """The detector in a build folder: the manifest's file, else the only `.onnx` there."""
    manifest_path = directory / MANIFEST_NAME
    if manifest_path.is_file():
        manifest = read_manifest(manifest_path)
        named = manifest.get("onnx_file")
        if named and (directory / named).is_file():
            return directory / named
    candidates = sorted(p for p in directory.glob("*.onnx") if p.is_file())
    detectors = [p for p in candidates if p.stem in ("video_detector", "image_detector")]
    if len(detectors) == 1:
        return detectors[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"{directory} holds no .onnx model", "run `kit build` into it first, or pass the .onnx file itself")
    raise InputError(f"{directory} holds {len(candidates)} .onnx files", "pass the one you mean as a file path")


def load_artifact(path: Path | str) -> Artifact:
    """Locate and read the ONNX model at `path` (file, build folder or zip)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the path, or run `kit build` to create a model")
    manifest = None
    if path.is_dir():
        onnx_path = find_onnx_in_dir(path)
        if (path / MANIFEST_NAME).is_file():
            manifest = read_manifest(path / MANIFEST_NAME)
        kind, name, data = "build-dir", onnx_path.name, _read_bytes(onnx_path)
    elif zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        name, data = read_single_onnx_from_zip(path)
        kind = "zip"
    else:
        kind, name, data = "onnx", path.name, _read_bytes(path)
        sibling = path.parent / MANIFEST_NAME
        if sibling.is_file():
            candidate = read_manifest(sibling)
            if candidate.get("onnx_file") in (None, path.name):
                manifest = candidate
    if not data:
        raise InputError(f"{path} is empty (0 bytes)", "rebuild the model with `kit build`")
    try:
        spec = spec_from_onnx(data)
    except InputError as exc:  # name the file the user gave, not "model bytes"
        label = str(path) if kind != "zip" else f"{path} ({name})"
        raise InputError(exc.message.replace("model bytes", label, 1), exc.hint) from exc
    if spec is None and manifest is not None:
        spec = DetectorSpec.from_dict(manifest["spec"])
    return Artifact(source=path, kind=kind, onnx_name=name, onnx_bytes=data, spec=spec, manifest=manifest)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror})", "check the path and its permissions") from exc
