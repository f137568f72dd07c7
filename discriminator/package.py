"""`kit package`: turn a checked model into the submission zip the network accepts, plus its record.

The zip holds exactly the model's files at its root: for a bundle (what the network
takes today) `model_config.yaml`, `model.py`, the weights file and `config.json` when
there is one; for ONNX the one member `<modality>_detector.onnx`. Members are written
deterministically (sorted names, fixed timestamp, permissions, creator system and
compression level) so the same model always gives the same sha256. Beside it goes
`<zip>.json`, the submission record: format, spec, check results, the zip's sha256 and
size, a sha256 per member, the packaged model's path, kit version and, with a hotkey,
the 16-hex commitment the chain records.

By default both land beside the model they package: in the `kit build` folder, or
the folder holding the `.onnx` file or bundle folder. The zip is written to a scratch
folder first, re-opened through the defensive reader and checked there (with the
build's manifest), so the check is of exactly what will be uploaded; nothing reaches
the output folder unless it passes (an untrained head needs `allow_untrained`), and
nothing is overwritten without `force`. `stale_packages` finds zips whose model has
since changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discriminator import __version__
from discriminator.artifact import Artifact, formats_in, load_artifact
from discriminator.check import CheckReport, Rule
from discriminator.check.bundle_context import BundleRunOptions
from discriminator.check.runner import check_artifact, expected_modality
from discriminator.errors import KitError, OutputExistsError, UsageError
from discriminator.formats import FORMATS
from discriminator.package_state import RECORD_SUFFIX, package_dir_for, package_states, read_record

#: Every member gets this timestamp (the earliest a zip can store) so packaging is reproducible.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
#: rw-r--r-- regular file, recorded as made on Unix whatever the packaging OS.
ZIP_MEMBER_MODE = (stat.S_IFREG | 0o644) << 16
ZIP_CREATE_SYSTEM_UNIX = 3
ZIP_COMPRESSION = zipfile.ZIP_DEFLATED
ZIP_COMPRESSLEVEL = 6
#: The subnet client's upload flag per modality.
PUSH_FLAGS = {"image": "--image-model", "video": "--video-model"}
#: What a push costs (current-contract §1): said beside the push line.
PUSH_COST_NOTE = ("a registration's first counted submission is free; each further one burns 0.5 TAO of SN34 alpha "
                  "(the client walks you through the burn; a failed upload or exam reuses the credit)")
#: Where `kit bench` writes its reports by default; the last bench of a model is looked for here.
BENCH_RESULTS_ROOT = Path("results")
#: What a build folder holding both formats packages when --format is not given: what the network takes today.
DEFAULT_PACKAGE_FORMAT = next(name for name, row in FORMATS.items() if row.accepted_now)
#: The rule `allow_untrained` lets through.
UNTRAINED_RULE = "head-trained"
#: --name: a file name, not a path.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
SS58_LENGTHS = (47, 48)
COMMITMENT_HEX_CHARS = 16


class CheckFailedError(KitError):
    """`kit check` found failures; carries the report so the command line can show it."""

    def __init__(self, report: CheckReport, blocking: list[str]):
        hint = f"run `kit check {report.source}` and apply the fixes shown"
        if blocking == [UNTRAINED_RULE]:
            hint = "train the head (kit train), or pass --allow-untrained if you really mean to submit it"
        super().__init__(f"refusing to package: {len(blocking)} rule(s) fail ({', '.join(blocking)})", hint)
        self.report = report


@dataclass
class PackageResult:
    """What `package_submission` wrote."""

    zip_path: Path
    record_path: Path
    sha256: str
    size: int
    format: str
    modality: str
    name: str
    members: list[str]
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


def write_deterministic_zip(zip_path: Path, members: dict[str, bytes]) -> None:
    """Write a zip whose bytes depend only on the members' names and bytes (written in sorted name order)."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.external_attr = ZIP_MEMBER_MODE
            info.create_system = ZIP_CREATE_SYSTEM_UNIX
            info.compress_type = ZIP_COMPRESSION
            zf.writestr(info, members[name], compress_type=ZIP_COMPRESSION, compresslevel=ZIP_COMPRESSLEVEL)


def validate_name(name: str) -> str:
    """--name is the zip's file name without `.zip`: letters, digits, `.`, `_`, `-`; no path, no `..`."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise UsageError(f"--name {name!r} is not a plain file name", "use letters, digits, '.', '_' and '-' only "
                         "(no '/' or '..'); choose the folder with --out")
    return name[:-4] if name.lower().endswith(".zip") else name


def package_submission(
    path: Path | str,
    out_dir: Path | str | None = None,
    hotkey: str | None = None,
    force: bool = False,
    modality: str | None = None,
    ort_min: str = "1.22",
    threads: int | None = None,
    on_rule: Callable[[Rule], None] | None = None,
    format: str | None = None,
    name: str | None = None,
    allow_untrained: bool = False,
    bundle_options: BundleRunOptions | None = None,
) -> PackageResult:
    """Check the model at `path` (an .onnx, a bundle folder or a build folder), then write the zip and its record.

    A build folder holding both formats packages the bundle unless `format` says "onnx".
    Default output: beside the model (see `package_dir_for`), as `<modality>_bundle.zip` or `<modality>_detector.zip`.
    """
    hotkey = validate_hotkey(hotkey) if hotkey is not None else None
    stem_override = validate_name(name) if name is not None else None
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        raise UsageError(f"{path} is already a zip", "run `kit check` on it, or package the model / build folder it came from")
    if format is None and path.is_dir() and DEFAULT_PACKAGE_FORMAT in formats_in(path):
        format = DEFAULT_PACKAGE_FORMAT
    artifact = load_artifact(path, format)
    folder = Path(out_dir) if out_dir is not None else package_dir_for(artifact)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file, not a folder", "pass a folder for the zip and its record (it is created if missing)")
    if artifact.location is not None and artifact.location != package_dir_for(artifact) \
            and folder.resolve() == artifact.location.resolve():
        raise UsageError(f"--out {folder} is the {artifact.format} folder itself: the zip would land among the "
                         f"{artifact.format}'s files", f"drop --out (the zip goes beside the {artifact.format}) or choose another folder")
    known_modality = expected_modality(artifact, modality)
    if known_modality is None:  # the model says nothing about its modality: the check names what is wrong
        report = check_artifact(artifact, modality=modality, ort_min=ort_min, threads=threads, on_rule=on_rule,
                                bundle_options=bundle_options)
        if report.failed:  # input-rank fails whenever the modality is unknown
            raise CheckFailedError(report, [r.id for r in report.failures])
        known_modality = report.modality
    # Refuse to overwrite before spending time on the check (the modality names the zip).
    zip_path, record_path = _output_paths(folder, stem_override, artifact.format, known_modality)
    _refuse_overwrite((zip_path, record_path), force, artifact.source)

    members = FORMATS[artifact.format].zip_members(artifact, known_modality)
    with tempfile.TemporaryDirectory(prefix="kit-package-") as scratch:
        candidate = Path(scratch) / zip_path.name
        write_deterministic_zip(candidate, members)
        report = _check_written_zip(candidate, artifact, members, known_modality, ort_min, threads, on_rule,
                                    bundle_options)
        blocking = [r.id for r in report.failures if not (allow_untrained and r.id == UNTRAINED_RULE)]
        if blocking:
            raise CheckFailedError(report, blocking)
        folder.mkdir(parents=True, exist_ok=True)
        temporary = zip_path.with_name(f".{zip_path.name}.{os.getpid()}.partial")
        try:
            shutil.copyfile(candidate, temporary)
            os.replace(temporary, zip_path)
        finally:
            temporary.unlink(missing_ok=True)
    modality = known_modality

    zip_bytes = zip_path.read_bytes()
    sha256 = hashlib.sha256(zip_bytes).hexdigest()
    push_command = f"gascli d push {PUSH_FLAGS[modality]} {zip_path}"
    result = PackageResult(zip_path=zip_path, record_path=record_path, sha256=sha256, size=len(zip_bytes),
                           format=artifact.format, modality=modality, name=zip_path.stem, members=sorted(members),
                           report=report, commitment=commitment(sha256, hotkey) if hotkey else None,
                           push_command=push_command)
    record = _record(result, artifact, members, folder, hotkey, allow_untrained)
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return result


def stale_packages(build_dir: Path | str) -> list[Path]:
    """Zips (and their records) in `build_dir` that no longer hold the model beside them; call after a rebuild."""
    stale: list[Path] = []
    for state in package_states(build_dir):
        if state.stale is not None:
            stale += [p for p in (state.zip_path, state.record_path) if p is not None and p.exists()]
    return stale


def onnx_zip_members(artifact: Artifact, modality: str) -> dict[str, bytes]:
    """An ONNX zip holds the one model file, named `<modality>_detector.onnx` (the onnx row's `zip_members`)."""
    return {f"{modality}_detector.onnx": artifact.onnx_bytes}


def bundle_zip_members(artifact: Artifact, modality: str) -> dict[str, bytes]:
    """A bundle zip holds the bundle's files under their own names (the bundle row's `zip_members`)."""
    return dict(artifact.members)


def _output_paths(folder: Path, stem: str | None, fmt: str, modality: str) -> tuple[Path, Path]:
    """The zip and its record: `<folder>/<stem>.zip` and `….zip.json`."""
    zip_path = folder / f"{stem or FORMATS[fmt].zip_stem.format(modality=modality)}.zip"
    return zip_path, zip_path.with_name(zip_path.name + RECORD_SUFFIX)


def _refuse_overwrite(paths: tuple[Path, Path], force: bool, source: Path | None = None) -> None:
    zip_path = paths[0]
    record = read_record(paths[1]) if paths[1].is_file() and not force else None
    if record is not None and source is not None and record.get("source"):
        earlier = (zip_path.parent / record["source"]).resolve()
        if earlier != source.resolve():
            raise KitError(f"{zip_path} already exists and was packaged from another model, {earlier}",
                           f"pass --name {source.name} to keep both, or --force to replace it")
    if zip_path.is_file() and not force:
        stale = next((s.stale for s in package_states(zip_path.parent) if s.zip_path == zip_path and s.stale), None)
        if stale is not None:
            raise KitError(f"{zip_path} already exists and holds an older model: {stale}",
                           "pass --force to replace it (and its record) with this model")
    for target in paths:
        if target.exists() and not force:
            raise OutputExistsError(target)
        if target.is_dir():
            raise UsageError(f"{target} is a folder", "choose another --name or --out")


def _check_written_zip(zip_path: Path, artifact: Artifact, members: dict[str, bytes], modality: str, ort_min: str,
                       threads: int | None, on_rule: Callable[[Rule], None] | None,
                       bundle_options: BundleRunOptions | None) -> CheckReport:
    """Re-open the zip through the defensive reader and check it: exactly what will be uploaded, with the build's manifest."""
    packed = load_artifact(zip_path)
    if packed.format != artifact.format or packed.members != members:
        raise KitError(f"{zip_path} does not hold the model byte for byte", "check the disk, then run `kit package` again")
    packed.manifest = artifact.manifest
    packed.spec = packed.spec or artifact.spec
    return check_artifact(packed, modality=modality, ort_min=ort_min, threads=threads, on_rule=on_rule,
                          bundle_options=bundle_options, source_label=str(artifact.source))


def _record(result: PackageResult, artifact: Artifact, members: dict[str, bytes], folder: Path, hotkey: str | None,
            allow_untrained: bool) -> dict[str, Any]:
    return {
        "kit_version": __version__,
        "name": result.name,
        "format": result.format,
        "modality": result.modality,
        "source": os.path.relpath(artifact.source.resolve(), folder.resolve()),
        "zip": result.zip_path.name,
        "zip_sha256": result.sha256,
        "zip_size": result.size,
        "members": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                    for name, data in sorted(members.items())},
        "spec": result.report.spec,
        "check": result.report.to_dict(),
        "allowed_untrained": allow_untrained and any(r.id == UNTRAINED_RULE for r in result.report.failures),
        "hotkey": hotkey,
        "commitment": result.commitment,
        "push_command": result.push_command,
    }


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


@dataclass(frozen=True)
class BenchExam:
    """The entrance-exam verdict of the newest `kit bench` of a model, as its results.json states it."""

    results_path: Path
    finished_at: str
    verdict: str
    accuracy: float | None
    interval: tuple[float, float] | None


def _benched_this_model(model_path: str, packaged: list[Path]) -> bool:
    benched = Path(model_path).resolve()
    return any(benched == path or path in benched.parents or benched in path.parents for path in packaged)


def _exam_of(results: dict[str, Any]) -> dict[str, Any] | None:
    for holder in (results.get("kit"), results, results.get("results")):
        exam = holder.get("exam") if isinstance(holder, dict) else None
        if isinstance(exam, dict) and isinstance(exam.get("verdict"), str):
            return exam
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def last_bench_exam(packaged: list[Path], model_format: str, root: Path = BENCH_RESULTS_ROOT) -> BenchExam | None:
    """The exam verdict of the newest bench under `root` (`<run>/results.json`) whose model is one of `packaged`
    (the input, its zip, or a folder inside or around them) in `model_format`; None when no such bench states one.
    Unreadable or foreign results.json files are passed over."""
    paths = [Path(p).resolve() for p in packaged]
    found: list[BenchExam] = []
    for results_path in sorted(Path(root).glob("*/results.json")) if Path(root).is_dir() else []:
        try:
            results = json.loads(results_path.read_text(encoding="utf-8"))
            metadata, kit = results.get("metadata") or {}, results.get("kit") or {}
            if kit.get("model_format") not in (None, model_format) or not _benched_this_model(str(metadata["model_path"]), paths):
                continue
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        exam = _exam_of(results)
        if exam is None:
            continue
        interval = exam.get("interval_95", exam.get("interval"))
        bounds = (tuple(_number(v) for v in interval) if isinstance(interval, (list, tuple)) and len(interval) == 2 else None)
        found.append(BenchExam(results_path, str(metadata.get("finished_at", "")), exam["verdict"], _number(exam.get("accuracy")),
                               bounds if bounds and None not in bounds else None))
    return max(found, key=lambda exam: exam.finished_at) if found else None
