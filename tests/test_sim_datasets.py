"""Dataset sources and sample choice: every format, both ways of declaring, and seeds that travel between machines."""

from __future__ import annotations

import base64
import io
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from discriminator.errors import InputError, UsageError
from tests.sim_helpers import image_bytes, random_image
from validator_sim.datasets import (
    Dataset,
    choose_samples,
    discover_datasets,
    iter_payloads,
    list_samples,
    load_datasets_yaml,
)


def _images(count: int, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {f"img_{i:02d}.png": image_bytes(random_image(rng, 10 + i, 12)) for i in range(count)}


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _write_tar(path: Path, members: dict[str, bytes], mode: str) -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _write_parquet(path: Path, members: dict[str, bytes], encoding: str) -> Path:
    values = list(members.values())
    if encoding == "bytes":
        column = pa.array(values, type=pa.binary())
    elif encoding == "struct":
        column = pa.array([{"bytes": v, "path": n} for n, v in members.items()])
    else:
        column = pa.array([base64.b64encode(v).decode() for v in values], type=pa.string())
    table = pa.table({"id": pa.array(list(members), type=pa.string()), "label": pa.array([1] * len(values)), "media": column})
    pq.write_table(table, path, row_group_size=3)
    return path


def _read_all(dataset: Dataset) -> dict[str, bytes]:
    listing = list_samples(dataset)
    out = {}
    for key, payload in iter_payloads(listing, list(range(len(listing.keys)))):
        out[key] = payload.read_bytes() if isinstance(payload, Path) else payload
    return out


@pytest.mark.parametrize("fmt", ["folder", "zip", "tar", "tar.gz", "parquet-bytes", "parquet-struct", "parquet-base64"])
def test_every_source_format_yields_every_sample(tmp_path: Path, fmt: str) -> None:
    members = _images(7)
    if fmt == "folder":
        source = tmp_path / "ds"
        (source / "nested").mkdir(parents=True)
        for i, (name, data) in enumerate(members.items()):
            (source / ("nested" if i % 2 else "") / name).write_bytes(data)
        (source / "README.txt").write_text("not media")
    elif fmt == "zip":
        source = _write_zip(tmp_path / "ds.zip", {f"sub/{n}": d for n, d in members.items()} | {"notes.txt": b"x"})
    elif fmt.startswith("tar"):
        source = _write_tar(tmp_path / f"ds.{fmt}", members, "w:gz" if fmt == "tar.gz" else "w")
    else:
        source = _write_parquet(tmp_path / "ds.parquet", members, fmt.split("-")[1])
    source_format = fmt.split("-")[0].replace("tar.gz", "tar")
    dataset = Dataset("ds", "image", "synthetic", source, source_format)
    got = _read_all(dataset)
    assert sorted(got.values()) == sorted(members.values())
    listing = list_samples(dataset)
    assert listing.keys == sorted(listing.keys)
    if fmt in ("folder", "zip"):
        assert listing.ignored == {"not a media file": 1}
    if fmt.startswith("parquet"):
        assert listing.column == "media" and listing.encoding == fmt.split("-")[1]


def test_parquet_media_column_can_be_named_and_is_checked(tmp_path: Path) -> None:
    members = _images(3)
    path = tmp_path / "ds.parquet"
    pq.write_table(pa.table({"a": pa.array(list(members.values())), "b": pa.array(list(reversed(members.values())))}), path)
    first_b = list_samples(Dataset("ds", "image", "real", path, "parquet", media_column="b"))
    assert first_b.column == "b"
    assert _read_all(Dataset("ds", "image", "real", path, "parquet", media_column="b"))["row00000000"] == list(members.values())[-1]
    with pytest.raises(UsageError, match="no column 'nope'"):
        list_samples(Dataset("ds", "image", "real", path, "parquet", media_column="nope"))


def test_discovery_finds_folders_archives_and_parquet_with_modality(tmp_path: Path) -> None:
    members = _images(4)
    (tmp_path / "real" / "photos").mkdir(parents=True)
    for name, data in members.items():
        (tmp_path / "real" / "photos" / name).write_bytes(data)
    (tmp_path / "synthetic" / "wrapped").mkdir(parents=True)
    _write_zip(tmp_path / "synthetic" / "wrapped" / "only.zip", members)
    _write_tar(tmp_path / "synthetic" / "gen.tar.gz", members, "w:gz")
    (tmp_path / "semisynthetic").mkdir()
    _write_parquet(tmp_path / "semisynthetic" / "inpaint.parquet", members, "struct")
    (tmp_path / "notes.txt").write_text("loose files beside the media-type folders are not datasets")
    found = {d.name: d for d in discover_datasets(tmp_path)}
    assert set(found) == {"photos", "wrapped", "gen", "inpaint"}
    assert found["wrapped"].source_format == "zip" and found["wrapped"].path.name == "only.zip"
    assert found["gen"].source_format == "tar" and found["gen"].media_type == "synthetic"
    assert found["inpaint"].source_format == "parquet" and found["inpaint"].label == 1
    assert found["photos"].label == 0
    assert {d.modality for d in found.values()} == {"image"}


def test_discovery_of_an_empty_tree_says_what_layout_is_expected(tmp_path: Path) -> None:
    (tmp_path / ".cache").mkdir()
    with pytest.raises(InputError) as caught:
        discover_datasets(tmp_path)
    assert "<real|synthetic|semisynthetic|rendered>" in caught.value.one_line()


@pytest.mark.parametrize("folder", ["fake", "Synthetic", "reals"])
def test_an_unknown_media_type_folder_is_an_error_naming_it(tmp_path: Path, folder: str) -> None:
    for media_type in ("real", folder):
        (tmp_path / media_type / "set").mkdir(parents=True)
        (tmp_path / media_type / "set" / "a.png").write_bytes(next(iter(_images(1).values())))
    with pytest.raises(InputError) as caught:
        discover_datasets(tmp_path)
    line = caught.value.one_line()
    assert folder in line and "real, synthetic, semisynthetic, rendered" in line


def test_unscored_files_are_counted_with_a_reason(tmp_path: Path) -> None:
    members = _images(2)
    (tmp_path / "real" / "photos").mkdir(parents=True)
    for name, data in members.items():
        (tmp_path / "real" / "photos" / name).write_bytes(data)
    (tmp_path / "real" / "photos" / "scan.tif").write_bytes(b"II*\x00")
    (tmp_path / "real" / "photos" / "readme.md").write_text("x")
    (tmp_path / "real" / "photos" / "clip.mp4").write_bytes(b"\x00")
    listing = list_samples(discover_datasets(tmp_path)[0])
    assert len(listing.keys) == 2
    assert listing.ignored == {".tif is not an extension the evaluator reads (rename to .tiff)": 1,
                               "not a media file": 1, "not an image file": 1}


def test_yaml_declares_datasets_relative_to_itself(tmp_path: Path) -> None:
    members = _images(3)
    _write_zip(tmp_path / "a.zip", members)
    (tmp_path / "b").mkdir()
    for name, data in members.items():
        (tmp_path / "b" / name).write_bytes(data)
    (tmp_path / "sets.yaml").write_text(
        "datasets:\n"
        "  - {name: gen-a, modality: image, media_type: synthetic, path: a.zip}\n"
        "image_datasets:\n"
        "  - {name: real-b, media_type: real, path: b, source_format: folder}\n"
    )
    found = {d.name: d for d in load_datasets_yaml(tmp_path / "sets.yaml")}
    assert found["gen-a"].source_format == "zip" and found["gen-a"].path == tmp_path / "a.zip"
    assert found["real-b"].modality == "image" and found["real-b"].label == 0
    (tmp_path / "bad.yaml").write_text("datasets:\n  - {name: x, media_type: fake, path: b}\n")
    with pytest.raises(UsageError, match="media_type 'fake'"):
        load_datasets_yaml(tmp_path / "bad.yaml")
    (tmp_path / "missing.yaml").write_text("- {media_type: real, path: nowhere}\n")
    with pytest.raises(InputError, match="does not exist"):
        load_datasets_yaml(tmp_path / "missing.yaml")


def test_same_seed_same_samples_after_copying_in_another_order(tmp_path: Path) -> None:
    members = _images(30)
    first, second = tmp_path / "one" / "ds", tmp_path / "two" / "ds"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    names = list(members)
    for name in names:
        (first / name).write_bytes(members[name])
    random.Random(5).shuffle(names)
    for name in names:  # a different creation order, so a different directory order on most filesystems
        shutil.copyfile(first / name, second / name)
    pick = {}
    for root in (first, second):
        listing = list_samples(Dataset("ds", "image", "real", root, "folder"))
        pick[root] = [listing.keys[i] for i in choose_samples(listing, 10, seed=3)]
    assert pick[first] == pick[second]
    assert len(set(pick[first])) == 10
    listing = list_samples(Dataset("ds", "image", "real", first, "folder"))
    assert [listing.keys[i] for i in choose_samples(listing, 10, seed=4)] != pick[first]
    assert choose_samples(listing, None, seed=3) == list(range(30))


def test_a_damaged_archive_is_reported_not_crashed(tmp_path: Path) -> None:
    path = tmp_path / "ds.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(InputError, match="cannot read"):
        list_samples(Dataset("ds", "image", "real", path, "zip"))
    tar_path = _write_tar(tmp_path / "ds.tar.gz", _images(6), "w:gz")
    listing = list_samples(Dataset("ds", "image", "real", tar_path, "tar"))
    tar_path.write_bytes(tar_path.read_bytes()[:300])  # cut short after listing
    payloads = dict(iter_payloads(listing, list(range(6))))
    assert set(payloads) == set(listing.keys) and b"" in payloads.values()


def test_one_dataset_name_under_two_media_types_is_an_error_naming_both(tmp_path: Path) -> None:
    members = _images(2)
    (tmp_path / "real" / "photos").mkdir(parents=True)
    for name, data in members.items():
        (tmp_path / "real" / "photos" / name).write_bytes(data)
    (tmp_path / "synthetic").mkdir()
    _write_zip(tmp_path / "synthetic" / "photos.zip", members)
    with pytest.raises(InputError) as caught:
        discover_datasets(tmp_path)
    line = caught.value.one_line()
    assert "'photos' is used 2 times" in line and "real/photos" in line and "synthetic/photos.zip" in line
    assert "own name" in line
