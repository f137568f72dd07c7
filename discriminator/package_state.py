"""Which kit submission zips lie beside a model, and whether each still holds it.

`kit package` writes `<zip>` and its record `<zip>.json` beside the model it packaged
(`package_dir_for`); `package_states` finds them again and says, for each, why it no
longer holds the model when it does not (the model changed or is gone, or the zip was
replaced after its record was written). `kit check`'s stale-package rule and `kit
package`'s refusal to overwrite read it; it imports neither, so both can.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discriminator.artifact import Artifact, load_artifact, read_zip_members, sniff_zip_format
from discriminator.errors import InputError, KitError
from discriminator.formats import FORMATS
from discriminator.spec import MANIFEST_NAME, MODALITIES

#: A zip's record is `<zip>` + this.
RECORD_SUFFIX = ".json"
#: The names `kit package` gives zips when --name does not say otherwise.
KIT_ZIP_STEMS = frozenset(row.zip_stem.format(modality=m) for row in FORMATS.values() for m in MODALITIES)


@dataclass(frozen=True)
class PackageState:
    """A submission zip (and its record) found beside a model, and why it no longer matches, if it does not."""

    zip_path: Path
    record_path: Path | None
    format: str | None
    stale: str | None  # None: the zip still holds the current model
    #: The model files it packaged, as found now (None when that cannot be told).
    model_files: frozenset[Path] | None = None

    def packages(self, artifact: Artifact) -> bool:
        """Whether this zip was made from `artifact`'s files (True too when that cannot be told)."""
        return self.model_files is None or artifact.location is None or self.model_files == model_files(artifact)


def model_files(artifact: Artifact) -> frozenset[Path] | None:
    """The files on disk an artifact was read from (None inside a zip)."""
    if artifact.location is None:
        return None
    return frozenset((artifact.location / name).resolve() for name in artifact.members)


def package_dir_for(artifact: Artifact) -> Path:
    """Where a model's zip goes by default: its `kit build` folder, else the folder holding the model."""
    if artifact.container == "build-dir":
        return artifact.source
    return artifact.source.parent


def package_states(folder: Path | str) -> list[PackageState]:
    """Every kit submission zip in `folder`, with why it is stale (its model changed, is gone, or the zip was replaced)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    states = []
    zips = sorted(p for p in folder.glob("*.zip") if p.is_file())
    for record_path in sorted(folder.glob(f"*.zip{RECORD_SUFFIX}")):
        zip_path = record_path.with_name(record_path.name[: -len(RECORD_SUFFIX)])
        if not zip_path.exists() and read_record(record_path) is not None:
            states.append(PackageState(zip_path, record_path, None, "its zip is gone"))
    for zip_path in zips:
        record_path = zip_path.with_name(zip_path.name + RECORD_SUFFIX)
        record = read_record(record_path) if record_path.is_file() else None
        if record is None and not (folder / MANIFEST_NAME).is_file():
            continue  # a zip the kit did not write, beside no build: not ours to judge
        if record is None and zip_path.stem not in KIT_ZIP_STEMS:
            continue
        states.append(_package_state(folder, zip_path, record_path if record is not None else None, record))
    return states


def _package_state(folder: Path, zip_path: Path, record_path: Path | None, record: dict | None) -> PackageState:
    try:
        members = read_zip_members(zip_path)
        fmt = sniff_zip_format(zip_path, list(members))
    except InputError as exc:
        return PackageState(zip_path, record_path, None, f"it cannot be read ({exc.message})")
    if record is not None and record.get("zip_sha256") != hashlib.sha256(zip_path.read_bytes()).hexdigest():
        return PackageState(zip_path, record_path, fmt, "the zip was replaced after its record was written")
    source = folder / record["source"] if record is not None and record.get("source") else folder
    try:
        current = load_artifact(source, fmt)
    except KitError:
        return PackageState(zip_path, record_path, fmt, f"the {fmt} model it packaged is no longer at {source}")
    if _hashes(current.members, fmt) != _hashes(members, fmt):
        return PackageState(zip_path, record_path, fmt, f"the {fmt} model at {source} changed after it was packaged",
                            model_files(current))
    return PackageState(zip_path, record_path, fmt, None, model_files(current))


def _hashes(members: dict[str, bytes], fmt: str) -> Any:
    """What must agree between a zip and its model: every file by name, or only the bytes where the zip renames them."""
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    return digests if FORMATS[fmt].zip_keeps_names else sorted(digests.values())


def read_record(path: Path) -> dict | None:
    """A zip's `kit package` record, or None when it is unreadable or not one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and "zip_sha256" in record else None
