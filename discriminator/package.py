"""`kit package`: turn a checked model into the submission zip the network accepts, plus its record.

The zip holds exactly one member, `<modality>_detector.onnx`, at its root, written
deterministically (fixed timestamp, permissions, creator system and compression
level) so the same model always gives the same sha256. Beside it goes
`<zip>.json`, the submission record: spec, check results, sha256, size, kit version
and, with a hotkey, the 16-hex commitment the chain records.

Nothing is written unless `kit check` passes; nothing is overwritten without
`force`; the written zip is re-opened through the defensive reader and checked again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discriminator import __version__
from discriminator.artifact import load_artifact
from discriminator.check import CheckReport, Rule, run_check
from discriminator.check.context import CheckContext
from discriminator.check.runner import parse_ort_version
from discriminator.errors import InputError, KitError, OutputExistsError, UsageError

#: Every member gets this timestamp (the earliest a zip can store) so packaging is reproducible.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
#: rw-r--r-- regular file, recorded as made on Unix whatever the packaging OS.
ZIP_MEMBER_MODE = (stat.S_IFREG | 0o644) << 16
ZIP_CREATE_SYSTEM_UNIX = 3
ZIP_COMPRESSION = zipfile.ZIP_DEFLATED
ZIP_COMPRESSLEVEL = 6
#: The subnet client's upload flag per modality.
PUSH_FLAGS = {"image": "--image-model", "video": "--video-model"}
SUBMISSIONS_DIR = "submissions"
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
SS58_LENGTHS = (47, 48)
COMMITMENT_HEX_CHARS = 16


class CheckFailedError(KitError):
    """`kit check` found failures; carries the report so the command line can show it."""

    def __init__(self, report: CheckReport):
        ids = ", ".join(r.id for r in report.failures)
        super().__init__(f"refusing to package: {len(report.failures)} rule(s) fail ({ids})",
                         f"run `kit check {report.source}` and apply the fixes shown")
        self.report = report


@dataclass
class PackageResult:
    """What `package_submission` wrote."""

    zip_path: Path
    record_path: Path
    sha256: str
    size: int
    modality: str
    name: str
    report: CheckReport
    commitment: str | None
    push_command: str


def validate_hotkey(hotkey: str) -> str:
    """Refuse anything that is not an SS58 address (base58, 47–48 characters, valid checksum)."""
    hotkey = hotkey.strip()
    hint = "pass your hotkey's SS58 address, e.g. from `btcli wallet overview`"
    if len(hotkey) not in SS58_LENGTHS:
        raise UsageError(f"--hotkey {hotkey!r} is {len(hotkey)} characters; an SS58 address has 47 or 48", hint)
    bad = sorted(set(hotkey) - set(BASE58_ALPHABET))
    if bad:
        raise UsageError(f"--hotkey contains {''.join(bad)!r}, which base58 never uses (no 0, O, I, l)", hint)
    if not _ss58_checksum_ok(_base58_decode(hotkey)):
        raise UsageError("--hotkey fails its SS58 checksum (a typo?)", hint)
    return hotkey


def commitment(zip_sha256: str, hotkey: str) -> str:
    """What the chain records for a submission: first 16 hex chars of sha256(zip sha256 hex + hotkey)."""
    return hashlib.sha256((zip_sha256 + hotkey).encode()).hexdigest()[:COMMITMENT_HEX_CHARS]


def write_deterministic_zip(zip_path: Path, member_name: str, data: bytes) -> None:
    """Write a one-member zip whose bytes depend only on (member_name, data)."""
    info = zipfile.ZipInfo(member_name, date_time=ZIP_DATE_TIME)
    info.external_attr = ZIP_MEMBER_MODE
    info.create_system = ZIP_CREATE_SYSTEM_UNIX
    info.compress_type = ZIP_COMPRESSION
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(info, data, compress_type=ZIP_COMPRESSION, compresslevel=ZIP_COMPRESSLEVEL)


def package_submission(
    path: Path | str,
    out_dir: Path | str | None = None,
    hotkey: str | None = None,
    force: bool = False,
    modality: str | None = None,
    ort_min: str = "1.22",
    threads: int | None = None,
    on_rule: Callable[[Rule], None] | None = None,
) -> PackageResult:
    """Check the model at `path` (an .onnx or a build folder), then write the zip and its record.

    Default output: `submissions/<name>/<modality>_detector.zip`, relative to the current directory.
    """
    hotkey = validate_hotkey(hotkey) if hotkey is not None else None
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        raise UsageError(f"{path} is already a zip", "run `kit check` on it, or package the .onnx / build folder it came from")
    artifact = load_artifact(path)
    name = _submission_name(artifact.spec.name if artifact.spec is not None else
                            (path.name if artifact.kind == "build-dir" else path.stem))
    folder = Path(out_dir) if out_dir is not None else Path.cwd() / SUBMISSIONS_DIR / name
    # Refuse to overwrite before spending time on the check (the modality names the zip).
    expected_modality = CheckContext(artifact=artifact, ort_min=parse_ort_version(ort_min), threads=1,
                                     requested_modality=modality).modality
    if expected_modality is not None:
        _refuse_overwrite(_output_paths(folder, expected_modality), force)
    report = run_check(path, modality=modality, ort_min=ort_min, threads=threads, on_rule=on_rule)
    if report.failed:
        raise CheckFailedError(report)
    modality = report.modality
    zip_path, record_path = _output_paths(folder, modality)
    _refuse_overwrite((zip_path, record_path), force)
    folder.mkdir(parents=True, exist_ok=True)

    member_name = f"{modality}_detector.onnx"
    temporary = zip_path.with_name(f".{zip_path.name}.{os.getpid()}.partial")
    try:
        write_deterministic_zip(temporary, member_name, artifact.onnx_bytes)
        recheck = _recheck(temporary, artifact.onnx_bytes, modality, ort_min, threads)
        os.replace(temporary, zip_path)
    finally:
        temporary.unlink(missing_ok=True)

    zip_bytes = zip_path.read_bytes()
    sha256 = hashlib.sha256(zip_bytes).hexdigest()
    push_command = f"gascli d push {PUSH_FLAGS[modality]} {zip_path}"
    result = PackageResult(zip_path=zip_path, record_path=record_path, sha256=sha256, size=len(zip_bytes),
                           modality=modality, name=name, report=report,
                           commitment=commitment(sha256, hotkey) if hotkey else None, push_command=push_command)
    record_path.write_text(json.dumps(_record(result, artifact.onnx_bytes, member_name, hotkey, recheck),
                                      indent=2, sort_keys=True, allow_nan=False) + "\n")
    return result


def _output_paths(folder: Path, modality: str) -> tuple[Path, Path]:
    """The zip and its record: `<folder>/<modality>_detector.zip` and `….zip.json`."""
    zip_path = folder / f"{modality}_detector.zip"
    return zip_path, zip_path.with_name(zip_path.name + ".json")


def _refuse_overwrite(paths: tuple[Path, Path], force: bool) -> None:
    for target in paths:
        if target.exists() and not force:
            raise OutputExistsError(target)


def _recheck(zip_path: Path, onnx_bytes: bytes, modality: str, ort_min: str, threads: int | None) -> dict[str, Any]:
    """Re-open the written zip through the defensive reader and run the rules again (untimed)."""
    reopened = load_artifact(zip_path)
    if reopened.onnx_bytes != onnx_bytes:
        raise KitError(f"{zip_path} does not hold the checked model byte for byte", "check the disk, then run `kit package` again")
    report = run_check(zip_path, modality=modality, ort_min=ort_min, threads=threads, measure_latency=False)
    if report.failed:
        ids = ", ".join(r.id for r in report.failures)
        raise KitError(f"the written zip fails {ids} although the model passed", "report this with KIT_DEBUG=1 output")
    return {"ok": True, "member": reopened.onnx_name, "summary": report.summary()}


def _record(result: PackageResult, onnx_bytes: bytes, member_name: str, hotkey: str | None,
            recheck: dict[str, Any]) -> dict[str, Any]:
    return {
        "kit_version": __version__,
        "name": result.name,
        "modality": result.modality,
        "zip": result.zip_path.name,
        "zip_sha256": result.sha256,
        "zip_size": result.size,
        "member": member_name,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "onnx_size": len(onnx_bytes),
        "spec": result.report.spec,
        "check": result.report.to_dict(),
        "recheck": recheck,
        "hotkey": hotkey,
        "commitment": result.commitment,
        "push_command": result.push_command,
    }


def _submission_name(raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip(".-")
    if not name:
        raise InputError(f"cannot make a folder name from {raw!r}", "pass --out to choose the output folder")
    return name


def _base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        number = number * 58 + BASE58_ALPHABET.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_zeros + body


def _ss58_checksum_ok(raw: bytes) -> bool:
    """SS58: prefix (1 or 2 bytes) + 32-byte public key + 2-byte blake2b-512 checksum over b'SS58PRE' + the rest."""
    if len(raw) not in (35, 36):
        return False
    checksum = hashlib.blake2b(b"SS58PRE" + raw[:-2], digest_size=64).digest()[:2]
    return checksum == raw[-2:]
