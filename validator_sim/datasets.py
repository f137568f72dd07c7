"""Local datasets: declaring them, listing their samples in a stable order, and streaming their bytes.

A dataset has a name, a modality, a media type that labels every sample
(real → 0; synthetic, semisynthetic → 1) and a source: a folder of media files,
a zip, a tar / tar.gz, or a parquet file whose media column holds raw bytes, a
`{bytes: …}` struct or base64 text (contract §5).

Declared by layout (`DIR/<media_type>/<dataset-name>/…`, or a single archive or
parquet file there or in place of the folder) or by a YAML file. Listings are
sorted, so a seeded sample choice is the same on any machine; payloads are read
one at a time in listing order, so memory does not grow with the dataset.
"""

from __future__ import annotations

import base64
import binascii
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml

from discriminator.errors import InputError, UsageError

#: `rendered` (CGI footage) is scored as real by the newest evaluator; see `class_label` for the other reading.
MEDIA_TYPES = ("real", "synthetic", "semisynthetic", "rendered")
#: The binary label each media type gives its samples (AI is the positive class).
LABELS = {"real": 0, "synthetic": 1, "semisynthetic": 1, "rendered": 0}
#: The multiclass label (current-contract §5): real 0, synthetic 1, semisynthetic 2.
CLASS_LABELS = {"real": 0, "synthetic": 1, "semisynthetic": 2, "rendered": 0}
#: How `rendered` is read: as real (newest evaluator code, the default) or as a fourth class (September mining guide).
RENDERED_READINGS = ("real", "fourth-class")
#: Extensions the evaluator does not read but a miner may expect it to, with what to do.
UNREAD_EXTENSIONS = {".tif": "rename to .tiff", ".jfif": "rename to .jpg", ".heic": "convert to .jpg or .png",
                     ".avif": "convert to .png or .webp", ".3gp": "convert to .mp4", ".flv": "convert to .mp4"}
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tiff", ".webp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".wmv", ".webm", ".m4v", ".mpeg", ".mpg"})
EXTENSIONS = {"image": IMAGE_EXTENSIONS, "video": VIDEO_EXTENSIONS}
MODALITIES = ("image", "video")

#: Source formats and the file names that announce them (longest suffix first).
ARCHIVE_SUFFIXES = ((".tar.gz", "tar"), (".tgz", "tar"), (".tar", "tar"), (".zip", "zip"), (".parquet", "parquet"))
#: `frames`: a folder of clip folders, each holding one clip's frames as image files (YAML only, video only).
SOURCE_FORMATS = ("folder", "zip", "tar", "parquet", "frames")
#: Rows read at a time from a parquet file: bounds memory for large media cells.
PARQUET_READ_ROWS = 32
#: Leading bytes of common container formats, to tell video from image in parquet cells.
VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3", b"RIFF", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3", b"\x30\x26\xb2\x75")


@dataclass(frozen=True)
class Dataset:
    """One labelled source of samples."""

    name: str
    modality: str
    media_type: str
    path: Path
    source_format: str
    #: Parquet only: the column holding the media; None = detect it.
    media_column: str | None = None

    def __post_init__(self) -> None:
        if self.media_type not in MEDIA_TYPES:
            raise UsageError(f"dataset {self.name!r}: media_type {self.media_type!r} is not one of {', '.join(MEDIA_TYPES)}",
                             "fix the folder name or the YAML entry")
        if self.modality not in MODALITIES:
            raise UsageError(f"dataset {self.name!r}: modality {self.modality!r} is not image or video", "fix the YAML entry")
        if self.source_format not in SOURCE_FORMATS:
            raise UsageError(f"dataset {self.name!r}: source_format {self.source_format!r} is not one of {', '.join(SOURCE_FORMATS)}",
                             "fix the YAML entry, or leave source_format out to detect it")

    @property
    def label(self) -> int:
        return LABELS[self.media_type]


def class_label(media_type: str, rendered: str = "real") -> int:
    """The multiclass label of a media type; `rendered` is real (0) or, read as a fourth class, 3."""
    if media_type == "rendered" and rendered == "fourth-class":
        return 3
    return CLASS_LABELS[media_type]


def binary_label(media_type: str, rendered: str = "real") -> int:
    """The binary label (AI = 1); rendered footage counts as AI only when read as a fourth class."""
    if media_type == "rendered" and rendered == "fourth-class":
        return 1
    return LABELS[media_type]


@dataclass
class Listing:
    """A dataset's samples in sorted order, plus what was ignored and why."""

    dataset: Dataset
    keys: list[str]
    #: Parquet: the media column and how its cells are encoded ("bytes", "struct", "base64").
    column: str | None = None
    encoding: str | None = None
    ignored: dict[str, int] = field(default_factory=dict)


def source_format_of(path: Path) -> str | None:
    """`folder`, `zip`, `tar` or `parquet` from a path's kind and suffix; None for anything else."""
    if path.is_dir():
        return "folder"
    lowered = path.name.lower()
    for suffix, fmt in ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix):
            return fmt
    return None


def _strip_source_suffix(name: str) -> str:
    lowered = name.lower()
    for suffix, _ in ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _modality_of_name(name: str) -> str | None:
    suffix = PurePosixPath(name).suffix.lower()
    for modality, extensions in EXTENSIONS.items():
        if suffix in extensions:
            return modality
    return None


def _member_names(path: Path, source_format: str) -> list[str]:
    """Every regular file in a folder or archive, as posix names relative to its root."""
    try:
        if source_format == "folder":
            return [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
        if source_format == "zip":
            with zipfile.ZipFile(path) as zf:
                return [info.filename for info in zf.infolist() if not info.is_dir()]
        if source_format == "tar":
            with tarfile.open(path, "r:*") as tf:
                return [m.name for m in tf.getmembers() if m.isfile()]
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read {path} as a {source_format} ({exc})", "check or re-create the archive") from exc
    raise AssertionError(f"no member listing for {source_format}")


def infer_modality(path: Path, source_format: str, media_column: str | None = None) -> str:
    """Image or video, by the majority of media extensions (parquet: by sniffing the first cell)."""
    if source_format == "frames":
        return "video"
    if source_format == "parquet":
        column, encoding = _parquet_media_column(path, media_column)
        first = next(_parquet_cells(path, column, encoding, {0}), None)
        return sniff_modality(first[1]) if first else "image"
    counts = {m: 0 for m in MODALITIES}
    for name in _member_names(path, source_format):
        modality = _modality_of_name(name)
        if modality:
            counts[modality] += 1
    if not any(counts.values()):
        raise InputError(f"{path} holds no image or video files",
                         f"expected extensions: {' '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))}")
    return max(MODALITIES, key=lambda m: counts[m])


def sniff_modality(data: bytes) -> str:
    """Guess image or video from a file's leading bytes (ISO-BMFF `ftyp` boxes and common containers are video)."""
    if data[4:8] == b"ftyp" and data[8:12] not in (b"avif", b"heic", b"mif1"):
        return "video"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image"
    return "video" if data.startswith(VIDEO_MAGIC) else "image"


def discover_datasets(data_dir: Path | str, media_column: str | None = None) -> list[Dataset]:
    """Datasets under `DIR/<media_type>/<dataset-name>[/…|.zip|.tar|.tar.gz|.parquet]`, sorted by name.

    A dataset folder holding exactly one archive or parquet file (and no media) is read from that file.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder", "point --data at a folder laid out as <media_type>/<dataset-name>/…")
    unknown = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in MEDIA_TYPES)
    if unknown:
        raise InputError(f"{root}: unknown media-type folder(s) {', '.join(unknown)} would not be scored",
                         f"name each folder one of {', '.join(MEDIA_TYPES)} (lower case), or move it out of {root}")
    datasets = []
    for media_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in MEDIA_TYPES):
        for entry in sorted(media_dir.iterdir()):
            source = _dataset_source(entry)
            if source is None:
                continue
            source_format = source_format_of(source)
            assert source_format is not None
            name = _strip_source_suffix(entry.name)
            datasets.append(Dataset(
                name=name,
                modality=infer_modality(source, source_format, media_column),
                media_type=media_dir.name,
                path=source,
                source_format=source_format,
                media_column=media_column,
            ))
    by_name: dict[str, list[Dataset]] = {}
    for dataset in datasets:
        by_name.setdefault(dataset.name, []).append(dataset)
    repeated = {name: found for name, found in sorted(by_name.items()) if len(found) > 1}
    if repeated:  # the report, the pixel cache and the evaluator all key a dataset by its name
        name, found = next(iter(repeated.items()))
        places = " and ".join(str(d.path.relative_to(root)) for d in found)
        raise InputError(f"{root}: dataset name {name!r} is used {len(found)} times ({places}), so their samples would be "
                         f"reported as one dataset", "give each dataset folder its own name (e.g. add the media type to it)")
    if not datasets:
        found = ", ".join(sorted(p.name for p in root.iterdir())[:6]) or "nothing"
        raise InputError(f"no datasets under {root} (found: {found})",
                         f"lay data out as {root}/<{'|'.join(MEDIA_TYPES)}>/<dataset-name>/…, or pass --datasets FILE.yaml")
    return sorted(datasets, key=lambda d: (d.modality, d.name, d.media_type))


def _dataset_source(entry: Path) -> Path | None:
    """The folder or file a dataset entry is read from, or None when the entry is not a dataset."""
    if entry.name.startswith("."):
        return None
    if entry.is_file():
        return entry if source_format_of(entry) in ("zip", "tar", "parquet") else None
    if not entry.is_dir():
        return None
    files = [p for p in entry.iterdir() if p.is_file() and not p.name.startswith(".")]
    has_subdirs = any(p.is_dir() for p in entry.iterdir())
    if len(files) == 1 and not has_subdirs and source_format_of(files[0]) in ("zip", "tar", "parquet"):
        return files[0]
    return entry


def load_datasets_yaml(path: Path | str, media_column: str | None = None) -> list[Dataset]:
    """Datasets listed in a YAML file: a list, or a mapping with `datasets:` (or `image:`/`video:`) lists.

    Each entry takes gasbench-style fields: name, modality, media_type, path (relative
    to the YAML file), and optional source_format and media_column.
    """
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror})", "check the --datasets path") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})", "fix the file's syntax") from exc
    entries: list[tuple[dict[str, Any], str | None]] = []
    if isinstance(document, list):
        entries = [(e, None) for e in document]
    elif isinstance(document, dict):
        entries = [(e, None) for e in document.get("datasets") or []]
        for modality in MODALITIES:
            for key in (modality, f"{modality}_datasets"):
                entries += [(e, modality) for e in document.get(key) or []]
    if not entries:
        raise InputError(f"{path} lists no datasets", "give a list of entries with name, media_type and path")
    datasets = []
    for entry, modality_hint in entries:
        if not isinstance(entry, dict) or not entry.get("path") or not entry.get("media_type"):
            raise InputError(f"{path}: every dataset needs at least `path` and `media_type`, got {entry!r}",
                             "add the missing fields")
        source = Path(str(entry["path"])).expanduser()
        source = source if source.is_absolute() else (path.parent / source)
        if not source.exists():
            raise InputError(f"{path}: dataset path {source} does not exist", "fix the `path` field")
        source_format = entry.get("source_format") or source_format_of(source)
        if source_format is None:
            raise InputError(f"{path}: cannot tell the format of {source}", "set source_format: folder | zip | tar | parquet")
        column = entry.get("media_column") or media_column
        datasets.append(Dataset(
            name=str(entry.get("name") or _strip_source_suffix(source.name)),
            modality=str(entry.get("modality") or modality_hint or infer_modality(source, source_format, column)),
            media_type=str(entry["media_type"]),
            path=source,
            source_format=source_format,
            media_column=column,
        ))
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"{path}: dataset names must be unique, repeated: {', '.join(duplicates)}", "rename one of them")
    return datasets


def _frame_folders(dataset: Dataset) -> Listing:
    """A `frames` dataset: every sub-folder holding at least one image file is a clip; loose files are counted."""
    keys, ignored = [], {}
    try:
        entries = sorted(dataset.path.iterdir())
    except OSError as exc:
        raise InputError(f"cannot read {dataset.path} ({exc.strerror})", "check the dataset path") from exc
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in entry.iterdir()):
            keys.append(entry.name)
        else:
            reason = "not a folder of frames"
            ignored[reason] = ignored.get(reason, 0) + 1
    return Listing(dataset, keys, ignored=ignored)


def list_samples(dataset: Dataset) -> Listing:
    """Every sample of `dataset` that matches its modality, sorted (by member path, or by row for parquet)."""
    if dataset.source_format == "frames":
        return _frame_folders(dataset)
    if dataset.source_format == "parquet":
        column, encoding = _parquet_media_column(dataset.path, dataset.media_column)
        rows = _parquet_file(dataset.path).metadata.num_rows
        return Listing(dataset, [f"row{i:08d}" for i in range(rows)], column=column, encoding=encoding)
    keys, ignored = [], {}
    for name in _member_names(dataset.path, dataset.source_format):
        if PurePosixPath(name).name.startswith("."):
            continue
        modality = _modality_of_name(name)
        if modality == dataset.modality:
            keys.append(name)
        else:
            suffix = PurePosixPath(name).suffix.lower()
            if modality:
                reason = f"not {'an' if dataset.modality == 'image' else 'a'} {dataset.modality} file"
            elif suffix in UNREAD_EXTENSIONS:
                reason = f"{suffix} is not an extension the evaluator reads ({UNREAD_EXTENSIONS[suffix]})"
            else:
                reason = "not a media file"
            ignored[reason] = ignored.get(reason, 0) + 1
    return Listing(dataset, sorted(keys), ignored=ignored)


def choose_samples(listing: Listing, cap: int | None, seed: int) -> list[int]:
    """Indices into `listing.keys`: a seeded shuffle of the sorted listing, first `cap` taken, returned in listing order.

    The shuffle is seeded by (seed, dataset name), so one dataset's choice does not depend on the others.
    """
    count = len(listing.keys)
    rng = np.random.default_rng([seed, zlib.crc32(listing.dataset.name.encode())])
    order = rng.permutation(count)
    chosen = order if cap is None else order[:cap]
    return sorted(int(i) for i in chosen)


def iter_payloads(listing: Listing, indices: list[int]) -> Iterator[tuple[str, bytes | Path]]:
    """(key, bytes or file path) for the chosen samples, in listing order, one at a time."""
    dataset = listing.dataset
    wanted = [listing.keys[i] for i in indices]
    if dataset.source_format in ("folder", "frames"):
        for key in wanted:
            yield key, dataset.path / key
    elif dataset.source_format == "zip":
        with zipfile.ZipFile(dataset.path) as zf:
            for key in wanted:
                yield key, _read_member(lambda k=key: zf.read(k))
    elif dataset.source_format == "tar":
        yield from _iter_tar(dataset.path, wanted)
    else:
        assert listing.column is not None and listing.encoding is not None
        for row, data in _parquet_cells(dataset.path, listing.column, listing.encoding, set(indices)):
            yield listing.keys[row], data


def _read_member(read: Any) -> bytes:
    """A member's bytes; b"" when the archive is damaged there, so decoding reports it as one bad sample."""
    try:
        return read()
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error):
        return b""


def _iter_tar(path: Path, wanted: list[str]) -> Iterator[tuple[str, bytes]]:
    remaining = set(wanted)
    found: set[str] = set()
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if member.name in remaining and member.isfile():
                    handle = tf.extractfile(member)
                    yield member.name, _read_member(lambda h=handle: h.read()) if handle else b""
                    found.add(member.name)
                    if found == remaining:
                        return
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        pass
    for key in sorted(remaining - found):  # cut off by a damaged archive: reported as unreadable samples
        yield key, b""


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and others for non-parquet files
        raise InputError(f"cannot read {path} as parquet ({exc})", "check the file, or re-export it") from exc


def _parquet_media_column(path: Path, override: str | None) -> tuple[str, str]:
    """(column, encoding): the named column, else the first struct-with-bytes, binary, or base64 text column."""
    import pyarrow as pa

    schema = _parquet_file(path).schema_arrow

    def encoding_of(column: str) -> str | None:
        kind = schema.field(column).type
        if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
            return "struct"
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            return "bytes"
        if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and _looks_base64(path, column):
            return "base64"
        return None

    if override:
        if override not in schema.names:
            raise UsageError(f"{path} has no column {override!r} (columns: {', '.join(schema.names)})", "fix --media-column")
        encoding = encoding_of(override)
        if encoding is None:
            raise UsageError(f"{path}: column {override!r} ({schema.field(override).type}) holds no media bytes",
                             "choose a binary, {bytes: …} struct, or base64 text column")
        return override, encoding
    for column in schema.names:
        encoding = encoding_of(column)
        if encoding:
            return column, encoding
    raise InputError(f"{path} has no media column (columns: {', '.join(schema.names)})",
                     "name it with --media-column, or store media as bytes, a {bytes: …} struct, or base64 text")


def _looks_base64(path: Path, column: str) -> bool:
    first = next(_parquet_file(path).iter_batches(batch_size=1, columns=[column]), None)
    if first is None or first.num_rows == 0 or first.column(0)[0].as_py() is None:
        return False
    text = first.column(0)[0].as_py()
    if len(text) < 16:
        return False
    try:
        base64.b64decode(text[:4096 - 4096 % 4], validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _parquet_cells(path: Path, column: str, encoding: str, rows: set[int]) -> Iterator[tuple[int, bytes]]:
    """(row, media bytes) for the wanted rows, reading a few rows at a time."""
    offset = 0
    remaining = len(rows)
    for batch in _parquet_file(path).iter_batches(batch_size=PARQUET_READ_ROWS, columns=[column]):
        values = batch.column(0)
        for i in range(batch.num_rows):
            row = offset + i
            if row in rows:
                yield row, _cell_bytes(values[i].as_py(), encoding)
                remaining -= 1
        offset += batch.num_rows
        if not remaining:
            return


def _cell_bytes(value: Any, encoding: str) -> bytes:
    if value is None:
        return b""
    if encoding == "struct":
        value = value.get("bytes")
        return bytes(value) if value else b""
    if encoding == "base64":
        try:
            return base64.b64decode(value)
        except (binascii.Error, ValueError):
            return b""
    return bytes(value)

