"""Write one dataset's files as the validator finds them: a folder, a zip, a tar(.gz) or a parquet file.

Archives carry fixed timestamps and owners, and parquet files fixed row groups, so
the same members give the same bytes. Parquet media columns come in the three
shapes seen on the network: raw bytes ("bytes"), a `{"bytes": …}` struct, and base64 text.
"""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

#: Every member of every archive gets this time (the earliest a zip can hold).
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
FIXED_TAR_MTIME = 315532800  # the same instant, in seconds since 1970

#: Parquet media-column shapes: name → (arrow type, how a file's bytes become a cell).
PARQUET_ENCODINGS = {
    "bytes": (pa.binary(), lambda filename, data: data),
    "struct": (pa.struct([("bytes", pa.binary()), ("path", pa.string())]), lambda filename, data: {"bytes": data, "path": filename}),
    "base64": (pa.string(), lambda filename, data: base64.b64encode(data).decode("ascii")),
}

#: Source formats → the single file written for them (None: the files themselves).
ARCHIVE_NAMES = {
    "folder": None,
    "zip": "{name}.zip",
    "tar": "{name}.tar",
    "tar.gz": "{name}.tar.gz",
    "parquet": "{name}.parquet",
}


def write_dataset(folder: Path, name: str, source_format: str, members: list[tuple[str, bytes]], parquet_encoding: str = "bytes") -> Path:
    """Write (file name, bytes) members into `folder` in `source_format`; return the folder, or the one file written."""
    folder.mkdir(parents=True, exist_ok=True)
    if source_format == "folder":
        for filename, data in members:
            (folder / filename).write_bytes(data)
        return folder
    target = folder / ARCHIVE_NAMES[source_format].format(name=name)
    if source_format == "zip":
        _write_zip(target, members)
    elif source_format == "tar":
        target.write_bytes(_tar_bytes(members))
    elif source_format == "tar.gz":
        with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
            packed.write(_tar_bytes(members))
    elif source_format == "parquet":
        _write_parquet(target, members, parquet_encoding)
    else:
        raise ValueError(f"unknown source format {source_format!r}")
    return target


def _write_zip(target: Path, members: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for filename, data in members:
            info = zipfile.ZipInfo(filename, date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for filename, data in members:
            info = tarfile.TarInfo(filename)
            info.size, info.mtime, info.mode = len(data), FIXED_TAR_MTIME, 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _write_parquet(target: Path, members: list[tuple[str, bytes]], encoding: str) -> None:
    media_type, to_cell = PARQUET_ENCODINGS[encoding]
    cells = [to_cell(filename, data) for filename, data in members]
    table = pa.table({
        "filename": pa.array([filename for filename, _ in members], pa.string()),
        "media": pa.array(cells, media_type),
    })
    pq.write_table(table, target, row_group_size=64)
